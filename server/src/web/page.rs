//! HTML building blocks: escaping, the page layout with its print stylesheet, the language of
//! the interface (Chinese first, English on request), and small server-side SVG charts.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Html;

use super::auth::{cookie, WebUser};

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

const STYLE: &str = r#"
body{font-family:"PingFang SC","Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
header{background:#12355b;color:#fff;padding:.6rem 1rem;display:flex;gap:1rem;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none}header .sp{flex:1}
main{padding:1rem;max-width:1200px;margin:auto}
h1{font-size:1.4rem}h2{font-size:1.15rem;border-bottom:2px solid #12355b;padding-bottom:.2rem;margin-top:1.6rem}h3{font-size:1rem}
table{border-collapse:collapse;width:100%;background:#fff;margin:.5rem 0}
th,td{border:1px solid #d5dae0;padding:.35rem .5rem;text-align:left;vertical-align:top;font-size:.92rem}
th{background:#eef1f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
.flag{color:#b3261e;font-weight:600}.ok{color:#1e7b34}.amber{color:#a15c00;font-weight:600}
.badge{display:inline-block;padding:0 .4rem;border-radius:.6rem;font-size:.8rem;background:#e3e8ef}
.badge.green{background:#d8f0dd;color:#1e7b34}.badge.amber{background:#fbe7c6;color:#7a4600}.badge.red{background:#f8d7d4;color:#8c1d18}
.nw{white-space:nowrap}.conflict{background:#fff5e0}.muted{color:#68707a;font-size:.85rem}
form.inline{display:inline}button,input[type=submit]{padding:.3rem .8rem;border:1px solid #12355b;background:#12355b;color:#fff;border-radius:.2rem;cursor:pointer}
button.secondary{background:#fff;color:#12355b}textarea,input[type=text],input[type=password]{width:100%;max-width:28rem;padding:.35rem;box-sizing:border-box}
.cards{display:flex;gap:.8rem;flex-wrap:wrap}.card{background:#fff;border:1px solid #d5dae0;padding:.6rem .9rem;min-width:9rem}
.card b{display:block;font-size:1.4rem}
@media print{header,form,.noprint{display:none}body{background:#fff}main{max-width:none;padding:0}h2{page-break-after:avoid}table{page-break-inside:auto}tr{page-break-inside:avoid}a{color:inherit;text-decoration:none}}
"#;

/// A whole page, with the signed-in user's header.
pub fn layout(lang: Lang, title: &str, user: Option<&WebUser>, body: &str) -> Html<String> {
    let nav = match user {
        Some(u) => format!(
            r#"<a href="/">{dash}</a><a href="/records?status=submitted">{review}</a><a href="/exports">{exports}</a>{forms}<span class="sp"></span>
<span>{name}</span><form class="inline" method="post" action="/logout"><input type="hidden" name="csrf" value="{csrf}"><button class="secondary" type="submit">{out}</button></form>"#,
            dash = lang.t("总览", "Dashboard"),
            review = lang.t("待审核", "To review"),
            exports = lang.t("导出", "Exports"),
            forms = if u.role.reviews() { format!(r#"<a href="/admin/forms">{}</a>"#, lang.t("表单管理", "Forms")) } else { String::new() },
            name = esc(&u.name),
            csrf = esc(&u.csrf),
            out = lang.t("退出", "Sign out"),
        ),
        None => r#"<span class="sp"></span>"#.to_string(),
    };
    let other = if lang.en { ("zh", "中文") } else { ("en", "English") };
    Html(format!(
        r#"<!doctype html><html lang="{code}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title} · 视导 shidao</title><style>{STYLE}</style></head>
<body><header><strong>视导 shidao</strong>{nav}<a class="noprint" href="/lang/{ol}">{on}</a></header><main>{body}</main></body></html>"#,
        code = if lang.en { "en" } else { "zh-CN" },
        title = esc(title),
        ol = other.0,
        on = other.1,
    ))
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
