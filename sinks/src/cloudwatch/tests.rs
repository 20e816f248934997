//! Unit tests of the sink task against a scripted local HTTP peer.
