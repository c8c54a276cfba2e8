//! Erasing a recipient for one company: what of their partition goes (a pure choice, tested
//! without I/O), and the deletes. The opt-outs table is not touched: its row (a hash) must
//! outlive the erasure, or the erasure would re-open messaging.
use super::{aws_failure, query_all, ConversationStore};
use crate::shared::failure::Failure;
use aws_sdk_dynamodb::types::AttributeValue;
use multicomms_wire::conversation::{ConversationKey, CONVERSATION_ID, PRIMARY_CHANNEL};
use multicomms_wire::{ChannelKind, Item};

/// What erasing a recipient for a company on a channel removes from the recipient's partition.
#[derive(Debug, Default, PartialEq)]
pub struct ToErase {
    /// The company's conversation records with them on the channel.
    pub conversations: Vec<ConversationKey>,
    /// The pointers naming one of the company's conversations with them on the channel.
    pub pointers: Vec<ConversationKey>,
}

/// The items of `recipient`'s partition that are `company_id`'s on `channel`. Another company's
/// conversations and pointers, and other channels', stay.
pub fn to_erase(items: &[Item], company_id: &str, channel: ChannelKind) -> ToErase {
    let text = |item: &Item, name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    };
    let pointer_prefix = format!("#active#{channel}#");
    let companys = format!("{company_id}#");
    let mut erase = ToErase::default();
    for item in items {
        let (Some(primary_channel), Some(conversation_id)) = (text(item, PRIMARY_CHANNEL), text(item, CONVERSATION_ID))
        else {
            continue;
        };
        let key = ConversationKey { primary_channel, conversation_id };
        if key.conversation_id.starts_with(&pointer_prefix) {
            if text(item, "active_conversation_id").is_some_and(|id| id.starts_with(&companys)) {
                erase.pointers.push(key);
            }
        } else if text(item, "company_id").as_deref() == Some(company_id)
            && text(item, "channel_method").as_deref() == Some(channel.as_str())
        {
            erase.conversations.push(key);
        }
    }
    erase
}

impl ConversationStore {
    /// Every item of `recipient`'s partition (their conversations with every company, and the
    /// pointers to them), read consistently.
    pub async fn recipient_items(&self, recipient: &str) -> Result<Vec<Item>, Failure> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PRIMARY_CHANNEL)
            .expression_attribute_values(":pk", AttributeValue::S(recipient.into()))
            .consistent_read(true);
        query_all(query).await
    }

    pub async fn delete(&self, key: &ConversationKey) -> Result<(), Failure> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .send()
            .await
            .map_err(|e| aws_failure("DeleteItem", &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, &str)]) -> Item {
        pairs.iter().map(|(k, v)| (k.to_string(), AttributeValue::S(v.to_string()))).collect()
    }

    fn record(conversation_id: &str, company_id: &str, channel: &str) -> Item {
        item(&[
            (PRIMARY_CHANNEL, "+447835065013"),
            (CONVERSATION_ID, conversation_id),
            ("company_id", company_id),
            ("channel_method", channel),
        ])
    }

    fn pointer(channel: &str, active: &str) -> Item {
        let sort_key = format!("#active#{channel}#+447588713814");
        item(&[(PRIMARY_CHANNEL, "+447835065013"), (CONVERSATION_ID, &sort_key), ("active_conversation_id", active)])
    }

    #[test]
    fn only_the_companys_conversations_and_pointers_on_the_channel_are_erased() {
        let items = [
            record("ci-a#p1#r1#447588713814", "ci-a", "whatsapp"),
            record("ci-a#p2#r2#447588713814", "ci-a", "whatsapp"),
            record("ci-a#p1#r3#447588713814", "ci-a", "sms"),
            record("ci-ab#p1#r4#447588713814", "ci-ab", "whatsapp"),
            pointer("whatsapp", "ci-a#p2#r2#447588713814"),
            pointer("whatsapp", "ci-ab#p1#r4#447588713814"),
            pointer("sms", "ci-a#p1#r3#447588713814"),
            item(&[(PRIMARY_CHANNEL, "+447835065013")]),
        ];
        let erase = to_erase(&items, "ci-a", ChannelKind::Whatsapp);
        let ids = |keys: &[ConversationKey]| keys.iter().map(|k| k.conversation_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&erase.conversations), ["ci-a#p1#r1#447588713814", "ci-a#p2#r2#447588713814"]);
        assert_eq!(ids(&erase.pointers), ["#active#whatsapp#+447588713814"]);
        assert_eq!(to_erase(&items, "ci-c", ChannelKind::Whatsapp), ToErase::default(), "another company's");
    }
}
