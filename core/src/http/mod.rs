//! The HTTP surface: the route table ([`routes`]: which path and method is which route, and who
//! may call it) and the bearer keys of the token and admin routes ([`auth`]).

pub mod auth;
pub mod routes;
