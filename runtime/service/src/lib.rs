//! Process plumbing every multicomms binary shares (the operator, the router, the processors):
//! how they call AWS ([`aws`], batching single requests with [`coalesce`]), log ([`logging`]),
//! stop ([`shutdown`]), serve HTTP ([`http`]) and on how many threads ([`threads`]).
pub mod aws;
pub mod coalesce;
pub mod http;
pub mod logging;
pub mod shutdown;
pub mod threads;
