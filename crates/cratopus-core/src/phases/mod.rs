//! The phases of a request, one module each, in the order [`crate::engine`] runs them.

pub mod backend;
pub mod background;
pub mod edge;
pub mod exchange;
pub mod request;
pub mod routing;
