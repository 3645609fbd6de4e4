//! The operator console's files, embedded in the build (no asset pipeline, no upload step, the
//! same wasm everywhere): one page, its script and its style sheet, served at `/admin`, and
//! the headers every admin answer carries.
//!
//! The page holds no data: its script asks the JSON admin routes with the key the operator
//! typed, kept in `sessionStorage`, and shows what they answer as text, never as HTML.

/// A file of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

/// The console's file at the request path `path` (`/admin`, `/admin/console.js`, …).
pub fn at(path: &str) -> Option<Asset> {
    path.strip_prefix("/admin").and_then(asset)
}

/// The console's file at `path` (below `/admin`), if it is one.
fn asset(path: &str) -> Option<Asset> {
    let (content_type, body) = match path {
        "" | "/" => (
            "text/html; charset=utf-8",
            include_str!("console/index.html"),
        ),
        "/console.js" => (
            "text/javascript; charset=utf-8",
            include_str!("console/console.js"),
        ),
        "/console.css" => (
            "text/css; charset=utf-8",
            include_str!("console/console.css"),
        ),
        _ => return None,
    };
    Some(Asset { content_type, body })
}

/// The page's policy: its own script and styles only, no other origin, no frame, no form
/// posted anywhere (the key never leaves in a URL), no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The headers of every admin answer, the page's and the JSON routes', errors included.
pub const ADMIN_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        let page = asset("").unwrap();
        assert!(page.content_type.starts_with("text/html"));
        assert_eq!(asset("/"), Some(page));
        // No inline script or style, nothing from another origin.
        for inline in [
            "<script>", "onclick=", "onload=", "style=", "http://", "https://",
        ] {
            assert!(!page.body.contains(inline), "{inline}");
        }
        assert!(page
            .body
            .contains(r#"<script src="/admin/console.js" defer></script>"#));
        assert!(page.body.contains("Admin key"));
        let script = asset("/console.js").unwrap().body;
        for never in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "localStorage",
        ] {
            assert!(!script.contains(never), "{never}");
        }
        assert!(script.contains("sessionStorage"));
        assert!(asset("/console.css").is_some());
        assert_eq!(asset("/../Cargo.toml"), None);
        assert_eq!(asset("/index.html"), None);
        assert_eq!(at("/admin"), Some(page));
        assert_eq!(at("/admin/status"), None);
        assert_eq!(at("/administrator"), None);
        assert_eq!(at("/wechat"), None);
    }
}
