//! What every page shares: the frame (`templates/layout.html`) with its print stylesheet
//! (`templates/style.css`), rendering a page template (askama, escaping every inserted value),
//! the language of the interface (Chinese first, English on request), and the formatting of
//! URL query values and numbers.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Html;

use askama::Template;

use super::auth::{cookie, WebUser};
use crate::error::{AppError, AppResult};

/// Escapes a value for a URL query.
pub fn url(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The interface language: Chinese unless the `shidao_lang` cookie says `en`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lang {
    pub en: bool,
}

impl Lang {
    /// Picks the Chinese or English text.
    pub fn t<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        if self.en { en } else { zh }
    }
    pub fn code(self) -> &'static str {
        if self.en { "en" } else { "zh" }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Lang { en: cookie(parts, "shidao_lang").as_deref() == Some("en") })
    }
}

/// What every page's frame needs: the language, the title and the signed-in user (none on the
/// sign-in page). A page template's struct carries it as `chrome` and extends `layout.html`.
#[derive(Debug, Clone, Copy)]
pub struct Chrome<'a> {
    pub lang: Lang,
    pub title: &'a str,
    pub user: Option<&'a WebUser>,
}

impl<'a> Chrome<'a> {
    pub fn new(lang: Lang, title: &'a str, user: Option<&'a WebUser>) -> Self {
        Chrome { lang, title, user }
    }
    /// The `lang` attribute of the page.
    pub fn html_lang(&self) -> &'static str {
        if self.lang.en { "en" } else { "zh-CN" }
    }
    /// The other language's code and name, for the switch in the header.
    pub fn other_lang(&self) -> (&'static str, &'static str) {
        if self.lang.en { ("zh", "中文") } else { ("en", "English") }
    }
}

/// Renders a page template (escaping by default) into a response body.
pub fn render(page: &impl Template) -> AppResult<Html<String>> {
    page.render().map(Html).map_err(|e| AppError::Internal(format!("page template: {e}")))
}

/// A number with at most one decimal, or a dash.
pub fn num(v: Option<f64>) -> String {
    v.map(|x| shidao_core::expr::fmt_num((x * 10.0).round() / 10.0)).unwrap_or_else(|| "—".into())
}
