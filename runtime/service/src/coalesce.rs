//! Single AWS requests coalesced into batch calls. Concurrent tasks each ask for their own key
//! (the operator's reconciles read one record each; the processors delete one message each);
//! the asks that arrive within a short window go out as one batch request (BatchGetItem,
//! DeleteMessageBatch), so N tasks make about N/batch calls instead of N. The batch runs in a
//! task of its own: an asker dropped mid-wait (a shutdown, a lost lease) leaves the others'
//! answers intact.
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;

/// What a key left out of its batch's answers gets, as the caller's error type.
#[derive(Debug, Clone, Copy)]
pub struct Unanswered;

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the batched request ended without an answer for this key")
    }
}

impl From<Unanswered> for String {
    fn from(unanswered: Unanswered) -> String {
        unanswered.to_string()
    }
}

/// One batch request: an answer for each key asked (a key left out gets [`Unanswered`]).
pub type FetchBatch<K, V, E> = Arc<dyn Fn(Vec<K>) -> BoxFuture<'static, HashMap<K, Result<V, E>>> + Send + Sync>;

type Asks<K, V, E> = Arc<Mutex<Vec<(K, oneshot::Sender<Result<V, E>>)>>>;
/// The askers of one key in a batch.
type Waiting<V, E> = Vec<oneshot::Sender<Result<V, E>>>;

pub struct Coalescer<K, V, E> {
    pending: Asks<K, V, E>,
    fetch: FetchBatch<K, V, E>,
    max_batch: usize,
    window: Duration,
}

impl<K, V, E> Clone for Coalescer<K, V, E> {
    fn clone(&self) -> Self {
        Coalescer {
            pending: self.pending.clone(),
            fetch: self.fetch.clone(),
            max_batch: self.max_batch,
            window: self.window,
        }
    }
}

impl<K, V, E> Coalescer<K, V, E>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
    E: Clone + Send + From<Unanswered> + 'static,
{
    /// Batches of at most `max_batch` keys (the API's limit), sent `window` after their first ask.
    pub fn new(max_batch: usize, window: Duration, fetch: FetchBatch<K, V, E>) -> Self {
        Coalescer { pending: Arc::default(), fetch, max_batch: max_batch.max(1), window }
    }

    pub async fn get(&self, key: K) -> Result<V, E> {
        let (answer, answered) = oneshot::channel();
        let first = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.push((key, answer));
            pending.len() == 1
        };
        if first {
            let (pending, fetch, max_batch, window) =
                (self.pending.clone(), self.fetch.clone(), self.max_batch, self.window);
            tokio::spawn(async move {
                tokio::time::sleep(window).await;
                let asks = std::mem::take(&mut *pending.lock().unwrap_or_else(PoisonError::into_inner));
                flush(asks, fetch, max_batch).await;
            });
        }
        answered.await.unwrap_or_else(|_| Err(Unanswered.into()))
    }
}

/// Sends the asks in batches of `max_batch` distinct keys, concurrently, and answers each ask.
async fn flush<K, V, E>(asks: Vec<(K, oneshot::Sender<Result<V, E>>)>, fetch: FetchBatch<K, V, E>, max_batch: usize)
where
    K: Eq + Hash + Clone,
    V: Clone,
    E: Clone + From<Unanswered>,
{
    let mut batches: Vec<HashMap<K, Waiting<V, E>>> = vec![];
    for (key, answer) in asks {
        let open = batches.iter_mut().find(|b| b.contains_key(&key) || b.len() < max_batch);
        match open {
            Some(batch) => batch.entry(key).or_default().push(answer),
            None => batches.push(HashMap::from([(key, vec![answer])])),
        }
    }
    let sends = batches.into_iter().map(|batch| {
        let fetch = fetch.clone();
        async move {
            let mut answers = fetch(batch.keys().cloned().collect()).await;
            for (key, waiting) in batch {
                let answer = answers.remove(&key).unwrap_or_else(|| Err(Unanswered.into()));
                for ask in waiting {
                    let _ = ask.send(answer.clone());
                }
            }
        }
    });
    futures::future::join_all(sends).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fetch that answers each key with its length and counts the batches it was sent.
    fn counting(batches: Arc<AtomicUsize>, sizes: Arc<Mutex<Vec<usize>>>) -> FetchBatch<String, usize, String> {
        Arc::new(move |keys: Vec<String>| {
            batches.fetch_add(1, Ordering::SeqCst);
            sizes.lock().unwrap_or_else(PoisonError::into_inner).push(keys.len());
            Box::pin(async move { keys.into_iter().map(|k| (k.clone(), Ok(k.len()))).collect() })
        })
    }

    #[tokio::test]
    async fn concurrent_asks_share_batches_of_at_most_the_limit_and_each_gets_its_own_answer() {
        let (batches, sizes) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(vec![])));
        let reads = Coalescer::new(3, Duration::from_millis(5), counting(batches.clone(), sizes.clone()));
        let keys = ["a", "bb", "ccc", "dddd", "bb", "eeeee", "ffffff"].map(String::from);
        let answers = futures::future::join_all(keys.iter().map(|k| reads.get(k.clone()))).await;
        let lengths: Vec<usize> = answers.into_iter().map(|a| a.expect("answered")).collect();
        assert_eq!(lengths, [1, 2, 3, 4, 2, 5, 6]);
        assert_eq!(batches.load(Ordering::SeqCst), 2, "six distinct keys in batches of three");
        assert!(sizes.lock().expect("sizes").iter().all(|n| *n <= 3));
    }

    #[tokio::test]
    async fn asks_apart_in_time_go_in_separate_batches_and_a_key_left_unanswered_is_an_error() {
        let fetch: FetchBatch<String, usize, String> = Arc::new(|keys: Vec<String>| {
            Box::pin(async move { keys.into_iter().filter(|k| k != "lost").map(|k| (k, Ok(0))).collect() })
        });
        let reads = Coalescer::new(100, Duration::from_millis(1), fetch);
        assert_eq!(reads.get("first".into()).await.expect("answered"), 0);
        let error = reads.get("lost".into()).await.expect_err("no answer");
        assert_eq!(error, Unanswered.to_string());
    }

    #[tokio::test]
    async fn an_ask_dropped_while_waiting_does_not_stop_the_batch_for_the_others() {
        let (batches, sizes) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(vec![])));
        let reads = Coalescer::new(10, Duration::from_millis(20), counting(batches, sizes));
        let dropped = reads.get("dropped".into());
        let kept = reads.get("kept".into());
        let first = tokio::time::timeout(Duration::from_millis(1), dropped).await;
        assert!(first.is_err(), "still waiting for the window when dropped");
        assert_eq!(kept.await.expect("answered"), 4);
    }
}
