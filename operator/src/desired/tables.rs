//! The tables every environment needs. They are created when missing and adopted when present
//! with the expected keys; they are never modified beyond turning TTL on, and never deleted.
use multicomms_wire::conversation::{
    CONVERSATION_ID, EXPIRES_AT, GLOBAL_INDEXES, LOCAL_INDEXES, MESSAGE_SID, PRIMARY_CHANNEL,
};
use multicomms_wire::{company, Naming};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    String,
    Number,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub kind: KeyType,
}

const fn s(name: &'static str) -> Key {
    Key { name, kind: KeyType::String }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub name: &'static str,
    pub partition: Key,
    pub sort: Key,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    pub partition: Key,
    pub sort: Option<Key>,
    pub global_indexes: Vec<Index>,
    /// Local indexes share the table's partition key.
    pub local_indexes: Vec<Index>,
    pub ttl_attribute: Option<&'static str>,
}

pub fn tables(naming: &Naming) -> Vec<TableSpec> {
    let plain = |name: String, partition, sort, ttl_attribute| TableSpec {
        name,
        partition,
        sort,
        global_indexes: vec![],
        local_indexes: vec![],
        ttl_attribute,
    };
    vec![
        plain(naming.company_data_table(), s(company::PARTITION_KEY), Some(s(company::SORT_KEY)), None),
        TableSpec {
            name: naming.conversations_table(),
            partition: s(PRIMARY_CHANNEL),
            sort: Some(s(CONVERSATION_ID)),
            global_indexes: GLOBAL_INDEXES
                .iter()
                .map(|g| Index { name: g.name, partition: s(g.partition_key), sort: s(g.sort_key) })
                .collect(),
            local_indexes: LOCAL_INDEXES
                .iter()
                .map(|l| Index {
                    name: l.name,
                    partition: s(PRIMARY_CHANNEL),
                    sort: Key { name: l.sort_key, kind: if l.numeric { KeyType::Number } else { KeyType::String } },
                })
                .collect(),
            // A company's retention (`retentionDays`); records without `expires_at` stay.
            ttl_attribute: Some(EXPIRES_AT),
        },
        plain(naming.replies_stage_table(), s(CONVERSATION_ID), Some(s(MESSAGE_SID)), Some(EXPIRES_AT)),
        plain(naming.replies_trigger_lock_table(), s(CONVERSATION_ID), None, Some(EXPIRES_AT)),
        plain(naming.opt_outs_table(), s(multicomms_wire::opt_out::RECIPIENT_KEY), None, None),
    ]
}

impl TableSpec {
    /// Every attribute used as a key of the table or an index, once, with its type.
    pub fn key_attributes(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = Vec::new();
        let all = std::iter::once(&self.partition)
            .chain(self.sort.iter())
            .chain(self.global_indexes.iter().chain(&self.local_indexes).flat_map(|i| [&i.partition, &i.sort]));
        for key in all {
            if !keys.iter().any(|k| k.name == key.name) {
                keys.push(key.clone());
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversations_table_has_the_original_indexes() {
        let all = tables(&Naming::new("ai-multi-comms", "dev"));
        let conversations = &all[1];
        assert_eq!(conversations.name, "ai-multi-comms-conversations-dev");
        assert_eq!(conversations.global_indexes.len(), 4);
        assert_eq!(conversations.local_indexes.len(), 4);
        let attributes = conversations.key_attributes();
        // primary_channel, conversation_id, 2 + 3 + 1 + 1 distinct GSI keys... counted once each.
        let task_complete = attributes.iter().find(|k| k.name == "task_complete").expect("LSI key");
        assert_eq!(task_complete.kind, KeyType::Number);
        assert_eq!(attributes.iter().filter(|k| k.name == "gsi_recipient_tel").count(), 1);
        assert_eq!(all[3].ttl_attribute, Some("expires_at"));
        assert_eq!(all[3].sort, None);
    }
}
