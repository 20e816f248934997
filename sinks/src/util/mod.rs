//! Pieces every network sink shares: the batcher, the socket transports and the socket
//! writer with its reconnect and resend rules. (Retry policy and TLS setup live in the collector, as
//! `logwharf_collector::backoff` and `logwharf_collector::tls`, since sources use them too.)

pub mod batcher;
pub mod socket;
pub mod transport;
