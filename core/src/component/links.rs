//! The authorization page's links (`api_create_preauthcode`): for PC and for mobile.

use super::*;

impl<'a, C: Clock, S: Store, H: Http> Platform<'a, C, S, H> {
    /// `GET /component/authorize-url`: a pre_auth_code and the PC and mobile authorization pages.
    pub async fn authorize_url(
        &self,
        redirect_uri: Option<&str>,
        auth_type: Option<&str>,
        biz_appid: Option<&str>,
    ) -> Result<Value, Error> {
        let redirect = redirect_uri
            .filter(|r| !r.is_empty())
            .ok_or(Error::MissingParameter("redirect_uri"))?;
        crate::settings::parse_http_url(redirect)
            .map_err(|_| Error::MalformedParameter("redirect_uri"))?;
        let auth_type = auth_type.filter(|a| !a.is_empty()).unwrap_or("3");
        if !(auth_type.len() == 1 && auth_type.bytes().all(|b| (b'1'..=b'6').contains(&b))) {
            return Err(Error::MalformedParameter("auth_type"));
        }
        if let Some(b) = biz_appid.filter(|b| !b.is_empty()) {
            if !is_app_id(b) {
                return Err(Error::MalformedParameter("biz_appid"));
            }
        }
        let component = self.creds.account.require_app_id()?;
        let answer = self
            .call(
                "api_create_preauthcode",
                &json!({ "component_appid": component }),
            )
            .await?;
        let code = answer
            .get("pre_auth_code")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("api_create_preauthcode answered no pre_auth_code"))?;
        let expires_at = self.creds.clock.now_secs().saturating_add(
            answer
                .get("expires_in")
                .and_then(Value::as_u64)
                .unwrap_or(1800),
        );
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("component_appid", component)
            .append_pair("pre_auth_code", code)
            .append_pair("redirect_uri", redirect)
            .append_pair("auth_type", auth_type);
        if let Some(b) = biz_appid.filter(|b| !b.is_empty()) {
            query.append_pair("biz_appid", b);
        }
        let query = query.finish();
        Ok(json!({
            "pc_url": format!("https://mp.weixin.qq.com/cgi-bin/componentloginpage?{query}"),
            "mobile_url": format!("https://open.weixin.qq.com/wxaopen/safe/bindcomponent?action=bindcomponent&no_scan=1&{query}#wechat_redirect"),
            "pre_auth_code": code,
            "expires_at": expires_at,
        }))
    }
}
