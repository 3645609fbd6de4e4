//! The HTTP surface: the route table ([`routes`]: which path and method is which route, and who
//! may call it), the bearer keys of the token and admin routes ([`auth`]) and the operator
//! console's files ([`console`]).

pub mod auth;
pub mod console;
pub mod routes;
