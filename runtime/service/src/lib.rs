//! Process plumbing every multicomms binary shares (the operator, the router, the processors):
//! how they call AWS ([`aws`]), log ([`logging`]), stop ([`shutdown`]) and serve HTTP ([`http`]).
pub mod aws;
pub mod http;
pub mod logging;
pub mod shutdown;
