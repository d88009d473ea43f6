//! HTML building blocks: escaping, the page frame (`templates/layout.html`) with its print
//! stylesheet (`templates/style.css`), the language of
//! the interface (Chinese first, English on request), and small server-side SVG charts.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Html;

use askama::Template;

use super::auth::{cookie, WebUser};
use crate::error::{AppError, AppResult};

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

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

#[derive(Template)]
#[template(path = "body.html")]
struct BodyPage<'a> {
    chrome: Chrome<'a>,
    body: &'a str,
}

/// A whole page around a body that is already HTML, with the signed-in user's header.
pub fn layout(lang: Lang, title: &str, user: Option<&WebUser>, body: &str) -> Html<String> {
    let page = BodyPage { chrome: Chrome::new(lang, title, user), body };
    match page.render() {
        Ok(html) => Html(html),
        // The frame has no fallible parts; should it ever fail, the page says so.
        Err(e) => Html(format!("<!doctype html><p>page template: {}</p>", esc(&e.to_string()))),
    }
}

/// A line chart of values over dates (`YYYY-MM-DD`), as inline SVG; each point links to `link`.
pub fn line_chart(points: &[(String, f64, String)], max: f64, caption: &str) -> String {
    if points.is_empty() {
        return String::new();
    }
    let (w, h, pad) = (640.0, 180.0, 30.0);
    let n = points.len().max(2) as f64 - 1.0;
    let x = |i: usize| pad + (w - 2.0 * pad) * (i as f64) / n.max(1.0);
    let y = |v: f64| h - pad - (h - 2.0 * pad) * (v / max).clamp(0.0, 1.0);
    let path: Vec<String> = points.iter().enumerate().map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.1))).collect();
    let mut svg = format!(
        r##"<figure><svg viewBox="0 0 {w} {h}" width="100%" style="max-width:{w}px;background:#fff;border:1px solid #d5dae0" role="img" aria-label="{cap}">
<line x1="{pad}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#9aa3ad"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{y0}" stroke="#9aa3ad"/>
<text x="2" y="{ty}" font-size="10">{max}</text><text x="2" y="{y0}" font-size="10">0</text>
<polyline fill="none" stroke="#12355b" stroke-width="2" points="{pts}"/>"##,
        cap = esc(caption),
        y0 = h - pad,
        x1 = w - pad,
        ty = pad + 4.0,
        max = shidao_core::expr::fmt_num(max),
        pts = path.join(" "),
    );
    for (i, (label, v, link)) in points.iter().enumerate() {
        svg.push_str(&format!(
            r##"<a href="{link}"><circle cx="{cx:.1}" cy="{cy:.1}" r="4" fill="#12355b"><title>{label}: {val}</title></circle></a><text x="{cx:.1}" y="{ly}" font-size="9" text-anchor="middle">{label}</text>"##,
            link = esc(link),
            cx = x(i),
            cy = y(*v),
            label = esc(label),
            val = shidao_core::expr::fmt_num(*v),
            ly = h - pad + 14.0,
        ));
    }
    svg.push_str(&format!("</svg><figcaption class=\"muted\">{}</figcaption></figure>", esc(caption)));
    svg
}

/// A number with at most one decimal, or a dash.
pub fn num(v: Option<f64>) -> String {
    v.map(|x| shidao_core::expr::fmt_num((x * 10.0).round() / 10.0)).unwrap_or_else(|| "—".into())
}
