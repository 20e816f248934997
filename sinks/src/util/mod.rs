//! Pieces every network sink shares. (Retry policy and TLS setup live in the collector, as
//! `logwharf_collector::backoff` and `logwharf_collector::tls`, since sources use them too.)

pub mod batcher;
