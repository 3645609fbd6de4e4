//! Reading the relay's settings from the Worker's bindings (vars and secrets are both strings).

use wechat_relay_core::config::Config;
use worker::Env;

pub fn load(env: &Env) -> Config {
    Config::load(|name| env.var(name).ok().map(|v| v.to_string()))
}
