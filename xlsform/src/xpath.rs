//! Translation of XLSForm expressions (ODK XPath with `${name}` references) into the expression
//! language of `docs/templates.md`.
//!
//! The translation is token by token: `${name}` becomes whatever the caller resolves it to
//! (normally `${id}`), XPath function names become ours (`count-selected` → `count_selected`),
//! and everything the language cannot hold is reported, never guessed: paths (`/a/b`, `..`,
//! bare names), predicates, and functions without an equivalent. The result is always parsed
//! with [`shidao_core::expr::Expr::parse`] by the caller, so a translation that passes here but
//! does not parse is still refused. What must stay true: a translated expression means what the
//! XLSForm one meant, or the translation fails.

/// Why an expression cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XError {
    /// Valid XLSForm that shidao cannot hold (left out with `skip_unsupported`).
    Unsupported(String),
    /// Not a valid expression, or a reference that cannot be resolved.
    Invalid(String),
}

/// A translated expression and the XLSForm names it refers to, in order.
#[derive(Debug, Clone)]
pub struct Translated {
    pub text: String,
    pub names: Vec<String>,
}

/// XLSForm/ODK functions mapped onto ours.
fn map_function(name: &str) -> Option<&'static str> {
    Some(match name {
        "not" => "not",
        "if" => "if",
        "coalesce" => "coalesce",
        "selected" => "selected",
        "count-selected" => "count_selected",
        "count" => "count",
        "count-non-empty" => "count",
        "sum" => "sum",
        "min" => "min",
        "max" => "max",
        "round" => "round",
        "abs" => "abs",
        "string-length" => "string_length",
        "today" => "today",
        "true" => "true",
        "false" => "false",
        "concat" => "concat",
        "regex" => "regex",
        _ => return None,
    })
}

/// Functions of the ODK XForms spec (and pyxform) that have no equivalent here.
const ODK_FUNCTIONS: &[&str] = &[
    "pulldata", "instance", "jr:choice-name", "selected-at", "position", "indexed-repeat", "once",
    "format-date-time", "format-date", "decimal-date-time", "decimal-date", "decimal-time", "date",
    "date-time", "now", "random", "randomize", "sqrt", "cos", "sin", "tan", "acos", "asin", "atan",
    "atan2", "exp", "exp10", "log", "log10", "pow", "pi", "floor", "ceiling", "int", "number",
    "string", "boolean", "boolean-from-string", "join", "contains", "starts-with", "ends-with",
    "substr", "substring-before", "substring-after", "translate", "normalize-space", "uuid",
    "digest", "base64-decode", "extract-signed", "area", "distance", "checklist",
    "weighted-checklist", "last", "local-name", "name", "version", "property", "geofence",
    "jr:itext", "search", "current",
];

/// Translates `src`; `resolve` turns a `${name}` into the text to emit.
pub fn translate(src: &str, resolve: &mut dyn FnMut(&str) -> Result<String, XError>) -> Result<Translated, XError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::new();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
                i += 1;
            }
            '$' => {
                if chars.get(i + 1) != Some(&'{') {
                    return Err(XError::Invalid("`$` must start a `${name}` reference".into()));
                }
                let start = i + 2;
                let mut j = start;
                while j < chars.len() && chars[j] != '}' {
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(XError::Invalid("unclosed `${`".into()));
                }
                let name: String = chars[start..j].iter().collect::<String>().trim().to_string();
                out.push_str(&resolve(&name)?);
                names.push(name);
                i = j + 1;
            }
            '\'' | '"' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != c {
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(XError::Invalid("unclosed string".into()));
                }
                out.extend(&chars[i..=j]);
                i = j + 1;
            }
            c if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) => {
                let mut j = i;
                while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                    j += 1;
                }
                out.extend(&chars[i..j]);
                i = j;
            }
            '.' if chars.get(i + 1) == Some(&'.') => {
                return Err(XError::Unsupported("`..` (a relative XPath path) has no equivalent: refer to the field as ${name}".into()));
            }
            '.' => {
                out.push('.');
                i += 1;
            }
            '(' | ')' | ',' | '=' | '+' | '-' | '*' => {
                out.push(c);
                i += 1;
            }
            '!' | '<' | '>' => {
                out.push(c);
                if chars.get(i + 1) == Some(&'=') {
                    out.push('=');
                    i += 1;
                } else if c == '!' {
                    return Err(XError::Invalid("`!` must be followed by `=`".into()));
                }
                i += 1;
            }
            '/' => {
                return Err(XError::Invalid(
                    "`/` is a path in XPath, not a division: divide with `div` and refer to fields as ${name}".into(),
                ));
            }
            '[' | ']' | '@' | '|' => {
                return Err(XError::Unsupported(format!("XPath `{c}` (paths and predicates) has no equivalent")));
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut j = i;
                while j < chars.len() && (chars[j].is_alphanumeric() || matches!(chars[j], '_' | '-' | '.' | ':')) {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                let mut k = j;
                while k < chars.len() && chars[k].is_whitespace() {
                    k += 1;
                }
                let call = chars.get(k) == Some(&'(');
                match word.as_str() {
                    // Operators even before a bracket: `15 div (2 + 1)`.
                    "and" | "or" | "div" | "mod" => {
                        if !out.is_empty() && !out.ends_with(' ') {
                            out.push(' ');
                        }
                        out.push_str(&word);
                        out.push(' ');
                    }
                    // A boolean cell reads `true`/`false`.
                    "true" | "false" if !call => out.push_str(&format!("{word}()")),
                    _ if call => match map_function(&word) {
                        Some(ours) => out.push_str(ours),
                        None if ODK_FUNCTIONS.contains(&word.as_str()) => {
                            return Err(XError::Unsupported(format!(
                                "the function `{word}()` has no equivalent in shidao's expression language"
                            )));
                        }
                        None => return Err(XError::Invalid(format!("`{word}()` is not an XLSForm function"))),
                    },
                    _ => {
                        return Err(XError::Unsupported(format!(
                            "`{word}` is an XPath path: refer to fields as ${{name}}"
                        )));
                    }
                }
                i = j;
            }
            other => return Err(XError::Invalid(format!("unexpected character `{other}`"))),
        }
    }
    Ok(Translated { text: out.trim().to_string(), names })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(src: &str) -> Result<String, XError> {
        translate(src, &mut |n: &str| Ok(format!("${{{}}}", n.to_lowercase()))).map(|t| t.text)
    }

    #[test]
    fn xpath_maps_functions_and_references() {
        assert_eq!(tr("count-selected(${Tags}) >= 2 and string-length(.) < 5").as_deref(), Ok("count_selected(${tags}) >= 2 and string_length(.) < 5"));
        assert_eq!(tr("${a} div 2 mod 3").as_deref(), Ok("${a} div 2 mod 3"));
        assert_eq!(tr("15 div (${a} + 1) and(${b})").as_deref(), Ok("15 div (${a} + 1) and (${b})"));
        assert_eq!(tr("true or false").as_deref(), Ok("true() or false()"));
        assert_eq!(tr("not(selected (., 'yes'))").as_deref(), Ok("not(selected (., 'yes'))"));
        assert_eq!(tr("concat(${a}, \"-\", 'x')").as_deref(), Ok("concat(${a}, \"-\", 'x')"));
    }

    #[test]
    fn xpath_refuses_what_it_cannot_hold() {
        assert!(matches!(tr("../zone = 'a'"), Err(XError::Unsupported(_))));
        assert!(matches!(tr("pulldata('f', 'a', 'b', 'c')"), Err(XError::Unsupported(m)) if m.contains("pulldata")));
        assert!(matches!(tr("/data/x > 1"), Err(XError::Invalid(_))));
        assert!(matches!(tr("frob(1)"), Err(XError::Invalid(m)) if m.contains("frob")));
        assert!(matches!(tr("${a} = ‘other’"), Err(XError::Invalid(m)) if m.contains('‘')));
        assert!(matches!(tr("label = 'x'"), Err(XError::Unsupported(_))));
    }
}
