//! Pieces every sink shares: the batcher, encoding large groups off the async workers
//! ([`offload`]), the dead-letter file ([`dead_letter`]), the socket transports and the socket writer with its
//! reconnect and resend rules, the per-container render cache with the one empty-render rule
//! ([`render`]) and confinement of rendered values ([`confine`]). (Retry policy and TLS setup
//! live in the collector, as `logwharf_collector::backoff` and `logwharf_collector::tls`,
//! since sources use them too.)

pub mod batcher;
pub mod confine;
pub mod dead_letter;
pub mod offload;
pub mod render;
pub mod socket;
pub mod transport;
