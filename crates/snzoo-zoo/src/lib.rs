//! The SN model zoo: every released model's card, the local store (`$SNZOO_HOME`, default
//! `~/.cache/snzoo`), and verified fetching (HTTP with resume, Google Drive, Hugging Face Hub).
//!
//! Conversion and evaluation are not this crate's business: it hands back a verified checkpoint.

pub mod card;
pub mod fetch;
pub mod store;

pub use card::{card, cards, ModelCard, Source};
pub use store::{Store, Verified};
