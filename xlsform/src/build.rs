//! The mapping from an XLSForm workbook to a template definition (see `docs/forms.md`).
//!
//! Three passes: (1) read the columns, choice lists and settings, and walk the survey rows into
//! sections, fields and repeats, giving each XLSForm name a field id; (2) translate every
//! expression, leaving out (with `skip_unsupported`) the rows shidao cannot hold; (3) check that no
//! kept field refers to a left-out one and that the fields do not depend on each other in a
//! cycle, then write the JSON and load it with [`Template::from_json`]. Errors are collected, not
//! returned at the first: the caller sees every problem at once. What must stay true: every issue
//! names its sheet, and its row and column where it has one; a loader error is mapped back to the
//! survey row of the field it names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use shidao_core::expr::{valid_id, Expr};
use shidao_core::template::{
    Choice, Field, FieldKind, Label, Required, Role, ScaleLevel, Section, Template, TemplateDef,
};

use crate::book::{self, BookError, Row, Sheet};
use crate::xpath::{translate, XError};
use crate::{ImportError, Imported, Issue, Options, Place, MAX_BYTES};

/// Errors beyond this many are not listed (the first ones are what a person fixes first).
const MAX_ISSUES: usize = 100;

/// Which of our two label languages a workbook column feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Zh,
    En,
    Other,
}

fn lang_of(tag: &str) -> Lang {
    let t = tag.trim().to_lowercase();
    let code = t.rsplit_once('(').map(|(_, c)| c.trim_end_matches(')').trim().to_string());
    let is = |words: &[&str]| words.iter().any(|w| t == *w || code.as_deref() == Some(*w) || t.starts_with(&format!("{w} ")));
    if is(&["zh", "zh-cn", "zh-hans", "zh-tw", "zh-hant", "chinese", "中文", "汉语", "简体中文"]) || t.contains("中文") {
        Lang::Zh
    } else if is(&["en", "eng", "english"]) {
        Lang::En
    } else {
        Lang::Other
    }
}

/// The columns of a sheet that carry text in several languages (`label`, `hint`, …).
#[derive(Debug, Default, Clone)]
struct Texts {
    /// `(language tag, column)`; the tag is `""` for the plain column.
    cols: Vec<(String, usize)>,
}

/// Which language tag fills our `zh` text and which fills `en`.
#[derive(Debug, Clone)]
struct LangChoice {
    zh: Option<String>,
    en: Option<String>,
}

impl Texts {
    fn get(&self, row: &Row, langs: &LangChoice) -> Option<Label> {
        let pick = |tag: &Option<String>| -> Option<String> {
            let tag = tag.as_ref()?;
            let col = self.cols.iter().find(|(t, _)| t == tag)?.1;
            let v = row.get(Some(col));
            (!v.is_empty()).then(|| v.to_string())
        };
        let any = || self.cols.iter().map(|(_, c)| row.get(Some(*c))).find(|v| !v.is_empty()).map(str::to_string);
        let zh = pick(&langs.zh);
        let en = pick(&langs.en);
        match (zh, en) {
            (None, None) => any().map(|v| Label { zh: v.clone(), en: v }),
            (Some(z), None) => Some(Label { en: z.clone(), zh: z }),
            (None, Some(e)) => Some(Label { zh: e.clone(), en: e }),
            (Some(zh), Some(en)) => Some(Label { zh, en }),
        }
    }
}

/// The survey sheet's columns, by meaning.
#[derive(Debug, Default)]
struct SurveyCols {
    type_: Option<usize>,
    name: Option<usize>,
    label: Texts,
    hint: Texts,
    constraint_message: Texts,
    /// Single-language expression and setting columns, by meaning → column.
    one: HashMap<&'static str, usize>,
}

/// Survey column meaning of a header, after aliases; `None` for a column we do not use.
fn survey_key(h: &str) -> Option<(&'static str, Option<String>)> {
    let lower = h.trim().to_lowercase();
    let (base, lang) = match lower.split_once("::").or_else(|| lower.split_once(':')) {
        Some((b, _)) if !matches!(b, "bind" | "media" | "body" | "instance") => (b.to_string(), Some(h.trim().get(b.len()..).unwrap_or("").trim_start_matches(':').to_string())),
        _ => (lower.clone(), None),
    };
    let key = match base.as_str() {
        "type" => "type",
        "name" => "name",
        "label" | "caption" => "label",
        "hint" => "hint",
        "constraint_message" | "constraint message" | "bind:jr:constraintmsg" | "bind::jr:constraintmsg" => "constraint_message",
        "required" | "bind:required" | "bind::required" => "required",
        "relevant" | "relevance" | "bind:relevant" | "bind::relevant" => "relevant",
        "constraint" | "bind:constraint" | "bind::constraint" => "constraint",
        "calculation" | "calculate" | "bind:calculate" | "bind::calculate" => "calculation",
        "choice_filter" | "choice filter" => "choice_filter",
        "default" => "default",
        "appearance" => "appearance",
        "repeat_count" | "repeat count" | "jr:count" => "repeat_count",
        "parameters" => "parameters",
        "read_only" | "read only" | "readonly" | "bind:readonly" | "bind::readonly" => "read_only",
        // shidao's own column: what the row means to the programme's reports (`lesson.total`).
        "meaning" => "meaning",
        _ => return None,
    };
    Some((key, lang))
}

fn col_letter(mut i: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push((b'A' + (i % 26) as u8) as char);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    s.iter().rev().collect()
}

struct Ctx {
    /// Places whose problem is already reported (a group's relevance, seen from each child).
    reported: HashSet<(u32, String)>,
    errors: Vec<Issue>,
    warnings: Vec<Issue>,
    skip: bool,
}

impl Ctx {
    fn err(&mut self, place: Place, msg: impl Into<String>) {
        if self.errors.len() < MAX_ISSUES {
            self.errors.push(Issue { place, message: msg.into() });
        }
    }
    fn warn(&mut self, place: Place, msg: impl Into<String>) {
        self.warnings.push(Issue { place, message: msg.into() });
    }
    /// Something shidao cannot hold: an error, or (skipping) a warning that it is left out.
    /// Returns whether it is left out.
    fn unsupported(&mut self, place: Place, msg: impl Into<String>) -> bool {
        let msg = msg.into();
        if self.skip {
            self.warn(place, format!("left out: {msg}"));
        } else {
            self.err(place, format!("{msg} (import with skip_unsupported to leave it out)"));
        }
        self.skip
    }
}

fn at(sheet: &str, row: Option<u32>, column: Option<&str>) -> Place {
    Place { sheet: sheet.to_string(), row, column: column.map(str::to_string) }
}

/// What an XLSForm name stands for.
#[derive(Debug, Clone)]
enum Target {
    Field { id: String, ack: bool },
    /// `today` metadata: read as `today()`.
    Today,
    /// Other metadata (start, end, deviceid…): dropped, nothing can read it.
    Meta,
    Group,
}

#[derive(Debug, Clone)]
struct NameInfo {
    row: u32,
    target: Target,
    /// Why the row is left out, once it is.
    dropped: Option<String>,
}

/// A question waiting for its expressions.
#[derive(Debug, Clone)]
struct Q {
    row: u32,
    name: Option<String>,
    field: Field,
    /// Raw expressions: (meaning, column header, source).
    exprs: Vec<(&'static str, String, String)>,
    /// Relevance inherited from enclosing nested groups: (column header, row, source).
    inherited: Vec<(String, u32, String)>,
    /// Sub-questions of a repeat.
    subs: Vec<Q>,
    dropped: bool,
}

#[derive(Debug)]
struct Sec {
    id: String,
    label: Label,
    row: Option<u32>,
    relevant: Option<(String, u32, String)>,
    qs: Vec<Q>,
    dropped: bool,
}

enum Frame {
    /// A top-level group: its section index.
    Section(usize, u32),
    /// A group inside a section or a repeat: its relevance (if any).
    Nested(u32, Option<(String, u32, String)>),
    /// A repeat: its index in the current section's questions.
    Repeat(usize, u32),
    /// A repeat that is left out (nested in a repeat): everything inside goes with it.
    Dropped(u32, &'static str, bool /* a repeat (else a group) */),
}

fn find_sheet<'a>(sheets: &'a [Sheet], name: &str) -> Option<&'a Sheet> {
    sheets.iter().find(|s| s.name.trim().eq_ignore_ascii_case(name))
}

/// `name` as a field id (`[a-z][a-z0-9_]*`), unique among `used`.
fn make_id(name: &str, fallback: &str, used: &mut HashSet<String>) -> String {
    let mut id: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect();
    while id.contains("__") {
        id = id.replace("__", "_");
    }
    let id = id.trim_matches('_').to_string();
    let mut id = if id.chars().any(|c| c.is_ascii_alphanumeric()) { id } else { fallback.to_string() };
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        id = format!("f_{id}");
    }
    let base = id.clone();
    let mut n = 2;
    while !valid_id(&id) || used.contains(&id) {
        id = format!("{base}_{n}");
        n += 1;
    }
    used.insert(id.clone());
    id
}

/// The template id from `settings.form_id` (or the file name): lowercase words joined by `-`.
fn template_id(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The template version from `settings.version` (rule in `docs/forms.md`).
pub(crate) fn version_of(cell: &calamine::Data, text: &str) -> Result<u32, String> {
    use calamine::Data;
    let from_datetime = |y: i64, mo: i64, d: i64, h: i64, mi: i64| -> Result<u32, String> {
        if !(2000..=2042).contains(&y) || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 {
            return Err(format!("version `{text}` reads as a date outside 2000–2042"));
        }
        let v = (((((y - 2000) * 100 + mo) * 100 + d) * 100 + h) * 100) + mi;
        u32::try_from(v).map_err(|_| format!("version `{text}` is too large"))
    };
    match cell {
        Data::DateTime(dt) => {
            let (y, mo, d, h, mi, _, _) = dt.to_ymd_hms_milli();
            return from_datetime(i64::from(y), i64::from(mo), i64::from(d), i64::from(h), i64::from(mi));
        }
        Data::Float(f) if f.fract() != 0.0 && *f > 1.0 && *f < 2_958_466.0 => {
            // A cached `=NOW()` without a date format: an Excel serial day number.
            let dt = calamine::ExcelDateTime::new(*f, calamine::ExcelDateTimeType::DateTime, false);
            let (y, mo, d, h, mi, _, _) = dt.to_ymd_hms_milli();
            return from_datetime(i64::from(y), i64::from(mo), i64::from(d), i64::from(h), i64::from(mi));
        }
        _ => {}
    }
    let t = text.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        if let Ok(v) = t.parse::<u32>() {
            if v >= 1 {
                return Ok(v);
            }
            return Err("version 0: versions start at 1".into());
        }
        if t.len() == 12 || t.len() == 14 {
            let n = |a: usize, b: usize| t[a..b].parse::<i64>().unwrap_or(-1);
            return from_datetime(n(0, 4), n(4, 6), n(6, 8), n(8, 10), n(10, 12));
        }
        return Err(format!("version `{t}` is larger than 4294967295 and is not a YYYYMMDDHHMM[SS] date-time"));
    }
    // `YYYY-MM-DD[ HH:MM[:SS]]` written as text.
    let digits: Vec<i64> = t.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).filter_map(|p| p.parse().ok()).collect();
    let looks_like_date = t.len() >= 10 && t.as_bytes().get(4) == Some(&b'-') && t.as_bytes().get(7) == Some(&b'-');
    if looks_like_date && digits.len() >= 3 {
        let g = |i: usize| digits.get(i).copied().unwrap_or(0);
        return from_datetime(g(0), g(1), g(2), g(3), g(4));
    }
    Err(format!("version `{t}` is neither a whole number nor a date-time: write a whole number such as 2024090101"))
}

fn parse_required(v: &str) -> Option<bool> {
    match v.trim().to_lowercase().as_str() {
        "" | "no" | "false" | "false()" | "0" => Some(false),
        "yes" | "true" | "true()" | "1" => Some(true),
        _ => None,
    }
}

/// `start=1 end=5 step=1` → map; keys other than `allowed` are refused.
fn parameters(src: &str, allowed: &[&str]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in src.split(|c: char| c.is_whitespace() || c == ';' || c == ',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!("parameter `{part}` is not key=value"));
        };
        let k = k.trim().to_lowercase();
        if !allowed.contains(&k.as_str()) && !k.starts_with("tick") {
            return Err(format!("unknown parameter `{k}` (expected {})", allowed.join(", ")));
        }
        out.insert(k, v.trim().to_string());
    }
    Ok(out)
}

enum TypeClass {
    Kind(FieldKind),
    Select { multiple: bool, list: String, or_other: bool },
    Range,
    Ack,
    BeginGroup,
    EndGroup,
    BeginRepeat,
    EndRepeat,
    Meta(bool /* today */),
    Unsupported(String),
    Unknown(String),
}

fn classify(t: &str) -> TypeClass {
    let words: Vec<&str> = t.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    let joined = lower.join(" ");
    let select_prefixes: [(&str, bool); 8] = [
        ("select_one_from_file ", false),
        ("select_multiple_from_file ", true),
        ("select_one_external ", false),
        ("select one from ", false),
        ("select all that apply from ", true),
        ("select_one ", false),
        ("select_multiple ", true),
        ("select1 ", false),
    ];
    for (p, multiple) in select_prefixes {
        if let Some(rest) = joined.strip_prefix(p) {
            if p.contains("file") || p.contains("external") {
                return TypeClass::Unsupported(format!(
                    "`{}` reads its choices from a file or an external list that is not part of the workbook",
                    p.trim()
                ));
            }
            let n = rest.split_whitespace().count();
            let mut list_words: Vec<&str> = words[words.len() - n..].to_vec();
            let or_other = list_words.last().is_some_and(|w| w.eq_ignore_ascii_case("or_other"));
            if or_other {
                list_words.pop();
            }
            return TypeClass::Select { multiple, list: list_words.join(" "), or_other };
        }
    }
    for (p, multiple) in [("add select one prompt using ", false), ("add select multiple prompt using ", true)] {
        if let Some(rest) = joined.strip_prefix(p) {
            return TypeClass::Select { multiple, list: rest.to_string(), or_other: false };
        }
    }
    match joined.as_str() {
        "text" | "string" | "add text prompt" => TypeClass::Kind(FieldKind::Text),
        "integer" | "int" | "add integer prompt" => TypeClass::Kind(FieldKind::Integer),
        "decimal" | "add decimal prompt" => TypeClass::Kind(FieldKind::Decimal),
        "date" | "add date prompt" => TypeClass::Kind(FieldKind::Date),
        "time" | "add time prompt" => TypeClass::Kind(FieldKind::Time),
        "note" | "add note prompt" => TypeClass::Kind(FieldKind::Note),
        "calculate" => TypeClass::Kind(FieldKind::Computed),
        "image" | "photo" | "add photo prompt" | "file" => TypeClass::Kind(FieldKind::Attachment),
        "range" => TypeClass::Range,
        "acknowledge" | "trigger" | "add acknowledge prompt" => TypeClass::Ack,
        "begin group" | "begin_group" => TypeClass::BeginGroup,
        "end group" | "end_group" => TypeClass::EndGroup,
        "begin repeat" | "begin_repeat" => TypeClass::BeginRepeat,
        "end repeat" | "end_repeat" => TypeClass::EndRepeat,
        "today" | "get today" => TypeClass::Meta(true),
        "start" | "end" | "deviceid" | "imei" | "username" | "email" | "phonenumber" | "simserial"
        | "subscriberid" | "audit" | "get start time" | "get end time" | "get device id"
        | "get subscriber id" | "get sim id" | "get phone number" | "instanceid" => TypeClass::Meta(false),
        j if j.starts_with("uri:") => TypeClass::Meta(false),
        "geopoint" | "gps" | "location" | "add location prompt" | "geotrace" | "geoshape" | "start-geopoint" => {
            TypeClass::Unsupported(format!("`{}` (a location) has no shidao field kind", words.join(" ")))
        }
        "barcode" | "add barcode prompt" => TypeClass::Unsupported("`barcode` (scanning) has no shidao field kind".into()),
        "audio" | "video" | "add audio prompt" | "add video prompt" | "background-audio" => {
            TypeClass::Unsupported(format!("`{}` (a recording) has no shidao field kind", words.join(" ")))
        }
        "datetime" | "add datetime prompt" => {
            TypeClass::Unsupported("`dateTime` has no shidao field kind: use a `date` row and a `time` row".into())
        }
        "rank" => TypeClass::Unsupported("ranking a list has no shidao field kind".into()),
        "osm" | "hidden" | "xml-external" | "csv-external" => {
            TypeClass::Unsupported(format!("`{}` has no shidao field kind", words.join(" ")))
        }
        j if j.starts_with("rank ") || j.starts_with("osm ") => {
            TypeClass::Unsupported(format!("`{}` has no shidao field kind", words.join(" ")))
        }
        j if j.starts_with("begin loop") || j.starts_with("begin_loop") => {
            TypeClass::Unknown("`begin loop` is legacy XLSForm: write a repeat".into())
        }
        "tel" => TypeClass::Unknown("`tel` is a CHT type, not XLSForm: use `text`".into()),
        "calculate_here" | "caseid" | "comments" | "text audit" => {
            TypeClass::Unknown(format!("`{joined}` is a SurveyCTO type, not XLSForm"))
        }
        j if j.starts_with("db:") => TypeClass::Unknown(format!("`{joined}` is a CHT type, not XLSForm")),
        _ => TypeClass::Unknown(format!("unknown question type `{}`", words.join(" "))),
    }
}

pub(crate) fn import(file_name: &str, bytes: &[u8], opts: &Options) -> Result<Imported, ImportError> {
    let whole = |msg: String| ImportError { issues: vec![Issue { place: at("workbook", None, None), message: msg }] };
    if bytes.len() > MAX_BYTES {
        return Err(whole(format!(
            "{file_name} is {} bytes; the largest workbook accepted is {MAX_BYTES} bytes (5 MiB)",
            bytes.len()
        )));
    }
    let sheets = match book::read(bytes) {
        Ok(s) => s,
        Err(BookError::Password) => {
            return Err(whole(format!("{file_name} is password-protected: save it without a password and import it again")));
        }
        Err(BookError::NotAWorkbook(why)) => return Err(whole(format!("{file_name} cannot be read as an Excel workbook: {why}"))),
    };
    let mut cx = Ctx { reported: HashSet::new(), errors: Vec::new(), warnings: Vec::new(), skip: opts.skip_unsupported };
    let out = build(file_name, &sheets, opts, &mut cx);
    // In workbook order: the whole file, then sheet by sheet (as the workbook has them), row by row.
    let order = |i: &Issue| {
        let sheet = sheets.iter().position(|s| s.name == i.place.sheet).map_or(0, |p| p + 1);
        (i.place.sheet != "workbook", sheet, i.place.row.unwrap_or(0))
    };
    cx.errors.sort_by_key(order);
    cx.warnings.sort_by_key(order);
    match out {
        Some(imported) if cx.errors.is_empty() => Ok(Imported { warnings: cx.warnings, ..imported }),
        _ => {
            if cx.errors.is_empty() {
                cx.err(at("workbook", None, None), "the workbook cannot be imported");
            }
            Err(ImportError { issues: cx.errors })
        }
    }
}

/// The language columns of a multi-language meaning, from a sheet's header.
fn texts_of(sheet: &Sheet, base: &str, cx: &mut Ctx) -> Texts {
    let mut t = Texts::default();
    for (i, h) in sheet.header.iter().enumerate() {
        let lower = h.to_lowercase();
        let tag = if lower == base {
            Some(String::new())
        } else {
            lower.strip_prefix(base).and_then(|r| r.strip_prefix("::").or_else(|| r.strip_prefix(':'))).map(|_| {
                let cut = h.find(':').map_or(0, |p| p);
                h[cut..].trim_start_matches(':').trim().to_string()
            })
        };
        if let Some(tag) = tag {
            if let Some((_, first)) = t.cols.iter().find(|(x, _)| x.eq_ignore_ascii_case(&tag)) {
                let first = *first;
                cx.err(
                    at(&sheet.name, Some(sheet.header_row), Some(h)),
                    format!("column {} repeats the header of column {} (`{h}`)", col_letter(i), col_letter(first)),
                );
                continue;
            }
            t.cols.push((tag, i));
        }
    }
    t
}

/// Chooses the columns that feed `zh` and `en`: a Chinese column if there is one, else the
/// default language, else the plain column, else the first.
fn choose_langs(tags: &[String], default_language: &str) -> LangChoice {
    let find = |l: Lang| tags.iter().find(|t| !t.is_empty() && lang_of(t) == l).cloned();
    let zh = find(Lang::Zh);
    let en = find(Lang::En);
    let primary = || {
        tags.iter()
            .find(|t| !default_language.is_empty() && t.eq_ignore_ascii_case(default_language))
            .or_else(|| tags.iter().find(|t| t.is_empty()))
            .or_else(|| tags.first())
            .cloned()
    };
    match (zh, en) {
        (Some(z), e) => LangChoice { zh: Some(z), en: e.or_else(primary) },
        (None, Some(e)) => {
            let p = primary();
            if p.as_ref().is_some_and(|p| p != &e && lang_of(p) != Lang::En) {
                LangChoice { zh: p, en: Some(e) }
            } else {
                LangChoice { zh: Some(e.clone()), en: Some(e) }
            }
        }
        (None, None) => {
            let p = primary();
            LangChoice { zh: p.clone(), en: p }
        }
    }
}

struct ChoiceList {
    row: u32,
    items: Vec<(String, Label, u32)>,
}

fn build(file_name: &str, sheets: &[Sheet], opts: &Options, cx: &mut Ctx) -> Option<Imported> {
    let Some(survey) = find_sheet(sheets, "survey") else {
        let names: Vec<&str> = sheets.iter().map(|s| s.name.as_str()).collect();
        cx.err(at("workbook", None, None), format!("the workbook has no `survey` sheet (its sheets: {})", names.join(", ")));
        return None;
    };
    let sname = survey.name.clone();
    let choices_sheet = find_sheet(sheets, "choices");
    let settings = find_sheet(sheets, "settings");

    // --- settings ---------------------------------------------------------------------------
    let setting = |key: &[&str]| -> Option<(String, calamine::Data, String)> {
        let s = settings?;
        let row = s.rows.first()?;
        for k in key {
            if let Some(c) = s.col(k) {
                let v = row.get(Some(c)).to_string();
                if !v.is_empty() {
                    return Some((v, row.raw.get(c).cloned().unwrap_or_default(), s.header[c].clone()));
                }
            }
        }
        None
    };
    let srow = settings.and_then(|s| s.rows.first().map(|r| r.number));
    let set_place = |col: &str| at(settings.map_or("settings", |s| s.name.as_str()), srow, Some(col));
    let default_language = setting(&["default_language"]).map(|s| s.0).unwrap_or_default();

    let stem = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let stem = stem.rsplit_once('.').map_or(stem, |(s, _)| s);
    let id = match setting(&["form_id", "id_string", "set_form_id"]) {
        Some((raw, _, col)) => {
            let id = template_id(&raw);
            if id.is_empty() {
                let from_file = template_id(stem);
                cx.warn(set_place(&col), format!("form_id `{raw}` has no Latin letters or digits: the template id is `{from_file}`, from the file name"));
                from_file
            } else {
                if id != raw {
                    cx.warn(set_place(&col), format!("form_id `{raw}` becomes the template id `{id}`"));
                }
                id
            }
        }
        None => {
            let from_file = template_id(stem);
            cx.warn(at(settings.map_or("settings", |s| s.name.as_str()), None, Some("form_id")), format!("no form_id: the template id is `{from_file}`, from the file name"));
            from_file
        }
    };
    let id = if id.is_empty() { "form".to_string() } else { id };
    let version = match setting(&["version"]) {
        Some((text, raw, col)) => match version_of(&raw, &text) {
            Ok(v) => v,
            Err(e) => {
                cx.err(set_place(&col), e);
                1
            }
        },
        None => {
            cx.warn(at(settings.map_or("settings", |s| s.name.as_str()), None, Some("version")), "no version: the template is version 1");
            1
        }
    };
    let filled_by = match setting(&["filled_by"]) {
        Some((raw, _, col)) => {
            let mut roles = Vec::new();
            for part in raw.split([',', '，', ' ']).map(str::trim).filter(|p| !p.is_empty()) {
                match Role::parse(&part.to_lowercase()) {
                    Some(r) if !roles.contains(&r) => roles.push(r),
                    Some(_) => {}
                    None => cx.err(set_place(&col), format!("`{part}` is not a role (inspector, expert, principal, supervisor, admin)")),
                }
            }
            roles
        }
        None => opts.filled_by.clone(),
    };
    if filled_by.is_empty() {
        cx.err(at(settings.map_or("settings", |s| s.name.as_str()), None, Some("filled_by")), "no role fills the form: name roles in a `filled_by` settings column or in the import options");
    }
    if let Some((_, _, col)) = setting(&["public_key"]) {
        cx.unsupported(set_place(&col), "public_key asks for encrypted records, which shidao does not offer: records would be stored unencrypted");
    }
    for ignored in ["submission_url", "style", "instance_name", "xml_root", "namespaces", "omit_instanceid", "clean_text_values"] {
        if let Some((_, _, col)) = setting(&[ignored]) {
            cx.warn(set_place(&col), format!("`{col}` is not used by shidao and is ignored"));
        }
    }

    // --- survey columns ---------------------------------------------------------------------
    let mut cols = SurveyCols::default();
    let mut seen: HashMap<(&'static str, String), usize> = HashMap::new();
    for (i, h) in survey.header.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        let Some((key, lang)) = survey_key(h) else {
            let lower = h.to_lowercase();
            if !lower.contains("note") {
                cx.warn(at(&sname, Some(survey.header_row), Some(h)), format!("column `{h}` is not used by shidao and is ignored"));
            }
            continue;
        };
        let lang_key = lang.clone().unwrap_or_default().to_lowercase();
        if let Some(first) = seen.insert((key, lang_key), i) {
            cx.err(
                at(&sname, Some(survey.header_row), Some(h)),
                format!("column {} repeats the header of column {} (`{h}`)", col_letter(i), col_letter(first)),
            );
            continue;
        }
        match key {
            "type" => cols.type_ = Some(i),
            "name" => cols.name = Some(i),
            "label" => cols.label.cols.push((lang.unwrap_or_default(), i)),
            "hint" => cols.hint.cols.push((lang.unwrap_or_default(), i)),
            "constraint_message" => cols.constraint_message.cols.push((lang.unwrap_or_default(), i)),
            k => {
                if lang.is_some() {
                    cx.warn(at(&sname, Some(survey.header_row), Some(h)), format!("column `{h}`: only one `{k}` column is used"));
                }
                cols.one.entry(k).or_insert(i);
            }
        }
    }
    if cols.type_.is_none() || cols.name.is_none() {
        cx.err(at(&sname, Some(survey.header_row), None), "the survey sheet needs a `type` and a `name` column");
        return None;
    }
    let label_tags: Vec<String> = cols.label.cols.iter().map(|(t, _)| t.clone()).collect();
    let langs = choose_langs(&label_tags, &default_language);
    if !label_tags.is_empty() && langs.zh.as_ref().is_none_or(|t| lang_of(t) != Lang::Zh) {
        cx.warn(
            at(&sname, Some(survey.header_row), None),
            format!(
                "no Chinese label column (such as `label::中文 (zh)`): the Chinese text is taken from `{}`",
                langs.zh.as_deref().map_or("label".to_string(), |t| if t.is_empty() { "label".into() } else { format!("label::{t}") })
            ),
        );
    }
    let hcol = |k: &str| cols.one.get(k).map(|&c| survey.header[c].clone()).unwrap_or_else(|| k.to_string());

    // --- choices ----------------------------------------------------------------------------
    let mut lists: HashMap<String, ChoiceList> = HashMap::new();
    if let Some(ch) = choices_sheet {
        let ln = ch.col("list_name").or_else(|| ch.col("list name"));
        let nm = ch.col("name").or_else(|| ch.col("value"));
        let labels = texts_of(ch, "label", cx);
        let ctags: Vec<String> = labels.cols.iter().map(|(t, _)| t.clone()).collect();
        let clangs = choose_langs(&ctags, &default_language);
        let allow_dup = setting(&["allow_choice_duplicates"]).is_some_and(|v| parse_required(&v.0) == Some(true));
        if (ln.is_none() || nm.is_none()) && !ch.rows.is_empty() {
            cx.err(at(&ch.name, Some(ch.header_row), None), "the choices sheet needs a `list_name` and a `name` column");
        } else {
            for r in &ch.rows {
                let list = r.get(ln).to_string();
                let name = r.get(nm).to_string();
                if list.is_empty() && name.is_empty() {
                    continue;
                }
                let place = |col: Option<usize>| at(&ch.name, Some(r.number), col.map(|c| ch.header[c].as_str()));
                if list.is_empty() {
                    cx.err(place(ln), format!("choice `{name}` has no list_name"));
                    continue;
                }
                if name.is_empty() {
                    cx.err(place(nm), format!("a choice of list `{list}` has no name"));
                    continue;
                }
                let label = labels.get(r, &clangs).unwrap_or_else(|| Label { zh: name.clone(), en: name.clone() });
                let entry = lists.entry(list.clone()).or_insert(ChoiceList { row: r.number, items: Vec::new() });
                if let Some(first) = entry.items.iter().find(|(n, _, _)| *n == name) {
                    let first_row = first.2;
                    if allow_dup {
                        cx.warn(place(nm), format!("choice `{name}` of list `{list}` repeats row {first_row}: only the first is kept"));
                    } else {
                        cx.err(place(nm), format!("choice `{name}` appears twice in list `{list}` (rows {first_row} and {})", r.number));
                    }
                    continue;
                }
                entry.items.push((name, label, r.number));
            }
        }
    }

    // --- survey rows: structure and names ---------------------------------------------------
    let mut names: HashMap<String, NameInfo> = HashMap::new();
    // (meaning, survey row, column header) of every row that declares one.
    let mut meaning_rows: Vec<(String, u32, String)> = Vec::new();
    let mut used_ids: HashSet<String> = HashSet::new();
    let mut section_ids: HashSet<String> = HashSet::new();
    let mut renamed: Vec<String> = Vec::new();
    let mut secs: Vec<Sec> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut unlabeled = 0usize;
    let title_label = {
        let s = settings;
        let t = s.map(|s| texts_of_settings(s, cx)).unwrap_or_default();
        let r = s.and_then(|s| s.rows.first());
        let ttags: Vec<String> = t.cols.iter().map(|(x, _)| x.clone()).collect();
        r.and_then(|r| t.get(r, &choose_langs(&ttags, &default_language)))
            .unwrap_or_else(|| Label { zh: stem.to_string(), en: stem.to_string() })
    };

    let ty_col = cols.type_;
    let name_col = cols.name;
    for r in &survey.rows {
        let ty = r.get(ty_col).to_string();
        let name = r.get(name_col).to_string();
        if ty.is_empty() {
            if !name.is_empty() {
                cx.err(at(&sname, Some(r.number), Some(&survey.header[ty_col.unwrap_or(0)])), format!("row `{name}` has no type"));
            }
            continue;
        }
        let place = |col: Option<&str>| at(&sname, Some(r.number), col);
        let tcol = survey.header[ty_col.unwrap_or(0)].clone();
        let ncol = survey.header[name_col.unwrap_or(0)].clone();
        let in_dropped = stack.iter().find_map(|f| if let Frame::Dropped(row, why, _) = f { Some((*row, *why)) } else { None });
        let class = classify(&ty);

        // Structure rows first.
        match class {
            TypeClass::EndGroup | TypeClass::EndRepeat => {
                let want_repeat = matches!(class, TypeClass::EndRepeat);
                match stack.pop() {
                    None => cx.err(place(Some(&tcol)), format!("`{ty}` closes nothing: no group or repeat is open")),
                    Some(f) => {
                        let (open_row, is_repeat) = match &f {
                            Frame::Section(_, r) | Frame::Nested(r, _) => (*r, false),
                            Frame::Repeat(_, r) | Frame::Dropped(r, _, true) => (*r, true),
                            Frame::Dropped(r, _, false) => (*r, false),
                        };
                        if is_repeat != want_repeat {
                            cx.err(
                                place(Some(&tcol)),
                                format!("`{ty}` closes the {} opened at row {open_row}", if is_repeat { "repeat" } else { "group" }),
                            );
                        }
                    }
                }
                continue;
            }
            _ => {}
        }

        // A name for everything but structure ends.
        let is_begin = matches!(class, TypeClass::BeginGroup | TypeClass::BeginRepeat);
        if name.is_empty() && !matches!(class, TypeClass::Kind(FieldKind::Note)) && !(is_begin && matches!(class, TypeClass::BeginGroup)) {
            cx.err(place(Some(&ncol)), format!("the `{ty}` row has no name"));
            if !is_begin {
                continue;
            }
        }
        if !name.is_empty()
            && let Some(prev) = names.get(&name) {
                cx.err(place(Some(&ncol)), format!("the name `{name}` is used twice (rows {} and {})", prev.row, r.number));
                if !is_begin {
                    continue;
                }
            }
        let label = cols.label.get(r, &langs);
        let hint = cols.hint.get(r, &langs);
        let cell = |k: &str| r.get(cols.one.get(k).copied()).to_string();
        let appearance = cell("appearance").to_lowercase();

        if let Some((drow, why)) = in_dropped {
            // Inside a left-out repeat: every name is known, and left out with it.
            if !name.is_empty() {
                names.insert(name.clone(), NameInfo { row: r.number, target: Target::Group, dropped: Some(format!("{why} (row {drow})")) });
            }
            if matches!(class, TypeClass::BeginGroup | TypeClass::BeginRepeat) {
                stack.push(Frame::Dropped(drow, why, matches!(class, TypeClass::BeginRepeat)));
            }
            continue;
        }

        let meaning = cell("meaning");
        if !meaning.is_empty() {
            meaning_rows.push((meaning, r.number, hcol("meaning")));
        }

        match class {
            TypeClass::BeginGroup => {
                let relevant = {
                    let v = cell("relevant");
                    (!v.is_empty()).then(|| (hcol("relevant"), r.number, v))
                };
                if !name.is_empty() {
                    names.insert(name.clone(), NameInfo { row: r.number, target: Target::Group, dropped: None });
                }
                if stack.is_empty() {
                    let sid = make_id(if name.is_empty() { "group" } else { &name }, "group", &mut section_ids);
                    let label = label.unwrap_or_else(|| {
                        let n = if name.is_empty() { title_label.zh.clone() } else { name.clone() };
                        Label { zh: n.clone(), en: n }
                    });
                    secs.push(Sec { id: sid, label, row: Some(r.number), relevant, qs: Vec::new(), dropped: false });
                    stack.push(Frame::Section(secs.len() - 1, r.number));
                } else {
                    // A nested group flattens: its label becomes a note, its relevance goes to
                    // every question inside.
                    if let Some(l) = label {
                        let nid = make_id(if name.is_empty() { "group" } else { &name }, &format!("group_{}", r.number), &mut used_ids);
                        let mut q = new_q(r.number, None, nid, FieldKind::Note, l);
                        q.inherited = inherited(&stack);
                        if let Some(rel) = &relevant {
                            q.inherited.push(rel.clone());
                        }
                        push_q(&mut secs, &stack, q);
                    }
                    stack.push(Frame::Nested(r.number, relevant));
                }
                continue;
            }
            TypeClass::BeginRepeat => {
                if stack.iter().any(|f| matches!(f, Frame::Repeat(..))) {
                    let outer = stack.iter().rev().find_map(|f| if let Frame::Repeat(_, row) = f { Some(*row) } else { None }).unwrap_or(0);
                    let msg = format!("the repeat `{name}` is inside the repeat opened at row {outer}: shidao's repeats cannot nest");
                    cx.unsupported(place(Some(&tcol)), msg);
                    names.insert(name.clone(), NameInfo { row: r.number, target: Target::Group, dropped: Some("a repeat inside a repeat".into()) });
                    stack.push(Frame::Dropped(r.number, "inside a repeat nested in a repeat", true));
                    continue;
                }
                ensure_section(&mut secs, &stack, &mut section_ids, &title_label);
                let rid = make_id(&name, &format!("repeat_{}", r.number), &mut used_ids);
                if rid != name {
                    renamed.push(format!("{name} → {rid}"));
                }
                names.insert(name.clone(), NameInfo { row: r.number, target: Target::Field { id: rid.clone(), ack: false }, dropped: None });
                let mut q = new_q(r.number, Some(name.clone()), rid, FieldKind::Repeat, label.unwrap_or_else(|| Label { zh: name.clone(), en: name.clone() }));
                q.inherited = inherited(&stack);
                let rel = cell("relevant");
                if !rel.is_empty() {
                    q.exprs.push(("relevant", hcol("relevant"), rel));
                }
                let count = cell("repeat_count");
                if !count.is_empty() {
                    match count.parse::<u32>() {
                        Ok(n) => {
                            q.field.min_rows = Some(n);
                            q.field.max_rows = Some(n);
                        }
                        Err(_) => cx.warn(
                            place(Some(&hcol("repeat_count"))),
                            format!("repeat_count `{count}` is not a fixed number: the number of rows is left to the person filling the form"),
                        ),
                    }
                }
                let qi = push_q(&mut secs, &stack, q);
                stack.push(Frame::Repeat(qi, r.number));
                continue;
            }
            _ => {}
        }

        // Questions.
        let unsup = |cx: &mut Ctx, names: &mut HashMap<String, NameInfo>, why: String| {
            cx.unsupported(place(Some(&tcol)), format!("`{name}`: {why}"));
            names.insert(name.clone(), NameInfo { row: r.number, target: Target::Group, dropped: Some(why) });
        };
        let kind = match &class {
            TypeClass::Unknown(why) => {
                cx.err(place(Some(&tcol)), why.clone());
                continue;
            }
            TypeClass::Unsupported(why) => {
                unsup(cx, &mut names, why.clone());
                continue;
            }
            TypeClass::Meta(today) => {
                names.insert(name.clone(), NameInfo { row: r.number, target: if *today { Target::Today } else { Target::Meta }, dropped: None });
                cx.warn(place(Some(&tcol)), format!("`{ty}` is not a field: shidao records the author, device and time of every edit itself"));
                continue;
            }
            TypeClass::Kind(k) => *k,
            TypeClass::Select { .. } => FieldKind::SingleChoice,
            TypeClass::Range => FieldKind::Decimal,
            TypeClass::Ack => FieldKind::YesNo,
            _ => continue,
        };
        ensure_section(&mut secs, &stack, &mut section_ids, &title_label);
        let fallback = format!("{}_{}", if kind == FieldKind::Note { "note" } else { "field" }, r.number);
        let fid = make_id(if name.is_empty() { &fallback } else { &name }, &fallback, &mut used_ids);
        if !name.is_empty() && fid != name {
            renamed.push(format!("{name} → {fid}"));
        }
        let label = match label {
            Some(l) => l,
            None => {
                if !matches!(kind, FieldKind::Computed | FieldKind::Note) {
                    unlabeled += 1;
                }
                let n = if name.is_empty() { fid.clone() } else { name.clone() };
                Label { zh: n.clone(), en: n }
            }
        };
        let mut q = new_q(r.number, (!name.is_empty()).then(|| name.clone()), fid.clone(), kind, label);
        q.field.hint = hint;
        q.inherited = inherited(&stack);
        if !name.is_empty() {
            names.insert(name.clone(), NameInfo { row: r.number, target: Target::Field { id: fid.clone(), ack: matches!(class, TypeClass::Ack) }, dropped: None });
        }

        let mut other: Option<Q> = None;
        match &class {
            TypeClass::Kind(FieldKind::Text) if appearance.contains("multiline") => q.field.kind = FieldKind::LongText,
            TypeClass::Kind(FieldKind::Attachment) if appearance.contains("signature") => q.field.kind = FieldKind::Signature,
            TypeClass::Select { multiple, list, or_other } => {
                let Some(cl) = lists.get(list) else {
                    cx.err(place(Some(&tcol)), format!("`{name}` uses the choice list `{list}`, which the choices sheet does not have"));
                    continue;
                };
                if cl.items.is_empty() {
                    cx.err(place(Some(&tcol)), format!("the choice list `{list}` (choices row {}) is empty", cl.row));
                    continue;
                }
                let ints: Option<Vec<i64>> = cl.items.iter().map(|(n, _, _)| n.parse::<i64>().ok()).collect();
                let consecutive = ints.as_ref().is_some_and(|v| v.windows(2).all(|w| w[1] == w[0] + 1) && v.len() >= 2);
                if !multiple && !or_other && appearance.contains("likert") && consecutive {
                    q.field.kind = FieldKind::Rating;
                    q.field.scale = cl
                        .items
                        .iter()
                        .zip(ints.unwrap_or_default())
                        .map(|((_, l, _), v)| ScaleLevel { value: v, label: l.clone(), description: None, points: None })
                        .collect();
                } else {
                    if appearance.contains("likert") {
                        cx.warn(place(Some(&hcol("appearance"))), format!("`{name}` is `likert` but its choices are not consecutive whole numbers: kept as a single choice"));
                    }
                    q.field.kind = if *multiple { FieldKind::MultipleChoice } else { FieldKind::SingleChoice };
                    q.field.options = cl.items.iter().map(|(n, l, _)| Choice { value: n.clone(), label: l.clone() }).collect();
                    if *or_other {
                        if !q.field.options.iter().any(|o| o.value == "other") {
                            q.field.options.push(Choice { value: "other".into(), label: Label { zh: "其他".into(), en: "Other".into() } });
                        }
                        let oname = format!("{name}_other");
                        let oid = make_id(&oname, &format!("{fid}_other"), &mut used_ids);
                        let mut o = new_q(r.number, Some(oname.clone()), oid.clone(), FieldKind::Text, Label { zh: "请注明其他".into(), en: "Specify other".into() });
                        o.inherited = q.inherited.clone();
                        o.exprs.push(("relevant", tcol.clone(), format!("selected(${{{name}}}, 'other')")));
                        match names.entry(oname.clone()) {
                            std::collections::hash_map::Entry::Occupied(_) => cx.err(
                                place(Some(&tcol)),
                                format!("`or_other` adds the field `{oname}`, but that name is already used"),
                            ),
                            std::collections::hash_map::Entry::Vacant(v) => {
                                v.insert(NameInfo { row: r.number, target: Target::Field { id: oid, ack: false }, dropped: None });
                            }
                        }
                        other = Some(o);
                    }
                }
            }
            TypeClass::Range => {
                let src = cell("parameters");
                match parameters(&src, &["start", "end", "step"]) {
                    Err(e) => {
                        cx.err(place(Some(&hcol("parameters"))), format!("`{name}`: {e}"));
                        continue;
                    }
                    Ok(p) => {
                        let num = |k: &str, d: f64| p.get(k).map_or(Some(d), |v| v.parse::<f64>().ok());
                        let (Some(start), Some(end), Some(step)) = (num("start", 1.0), num("end", 10.0), num("step", 1.0)) else {
                            cx.err(place(Some(&hcol("parameters"))), format!("`{name}`: start, end and step must be numbers"));
                            continue;
                        };
                        if step == 0.0 || (end - start) / step < 0.0 {
                            cx.err(place(Some(&hcol("parameters"))), format!("`{name}`: the range {start} to {end} by {step} is empty"));
                            continue;
                        }
                        let points = ((end - start) / step).abs() + 1.0;
                        let whole = [start, end, step].iter().all(|x| x.fract() == 0.0);
                        if whole && points <= 11.0 {
                            q.field.kind = FieldKind::Rating;
                            let mut v = start as i64;
                            while (step > 0.0 && v as f64 <= end) || (step < 0.0 && v as f64 >= end) {
                                let t = v.to_string();
                                q.field.scale.push(ScaleLevel { value: v, label: Label { zh: t.clone(), en: t }, description: None, points: None });
                                v += step as i64;
                            }
                            if step < 0.0 {
                                q.field.scale.reverse();
                            }
                        } else {
                            q.field.min = Some(start.min(end));
                            q.field.max = Some(start.max(end));
                            if step != 1.0 {
                                cx.warn(place(Some(&hcol("parameters"))), format!("`{name}`: a decimal from {start} to {end}; the step {step} is not enforced"));
                            }
                        }
                    }
                }
            }
            _ => {}
        }

        // Columns.
        let kind = q.field.kind;
        let holds = kind.holds_answer();
        let calc = cell("calculation");
        if kind == FieldKind::Computed && calc.is_empty() {
            cx.err(place(Some(&hcol("calculation"))), format!("the calculate row `{name}` has no calculation"));
        } else if !calc.is_empty() {
            if kind == FieldKind::Note {
                cx.warn(place(Some(&hcol("calculation"))), format!("`{name}`: a note shows no value; the calculation is ignored"));
            } else {
                if kind != FieldKind::Computed {
                    cx.warn(place(Some(&hcol("calculation"))), format!("`{name}` has a calculation: it becomes a computed field, no longer entered"));
                    q.field.kind = FieldKind::Computed;
                    q.field.options.clear();
                    q.field.scale.clear();
                    q.field.min = None;
                    q.field.max = None;
                }
                q.exprs.push(("compute", hcol("calculation"), calc));
            }
        }
        let holds = holds && q.field.kind.holds_answer();
        let req = cell("required");
        if holds {
            match parse_required(&req) {
                Some(b) => q.field.required = Required::Always(b),
                None => q.exprs.push(("required", hcol("required"), req)),
            }
        }
        let rel = cell("relevant");
        if !rel.is_empty() {
            q.exprs.push(("relevant", hcol("relevant"), rel));
        }
        let cons = cell("constraint");
        if !cons.is_empty() {
            if holds {
                q.exprs.push(("constraint", hcol("constraint"), cons));
                q.field.constraint_message = cols.constraint_message.get(r, &langs);
            } else {
                cx.warn(place(Some(&hcol("constraint"))), format!("`{name}` holds no answer: its constraint is ignored"));
            }
        }
        let def = cell("default");
        if !def.is_empty() && holds {
            cx.warn(place(Some(&hcol("default"))), format!("`{name}`: the default `{def}` is not filled in (templates have no defaults)"));
        }
        let cf = cell("choice_filter");
        if !cf.is_empty() {
            cx.warn(place(Some(&hcol("choice_filter"))), format!("`{name}`: choice_filter `{cf}` is not applied: every option of the list is offered"));
        }
        push_q(&mut secs, &stack, q);
        if let Some(o) = other {
            push_q(&mut secs, &stack, o);
        }
    }
    for f in stack.iter().rev() {
        let (row, what) = match f {
            Frame::Section(_, r) | Frame::Nested(r, _) => (*r, "group"),
            Frame::Repeat(_, r) | Frame::Dropped(r, _, true) => (*r, "repeat"),
            Frame::Dropped(r, _, false) => (*r, "group"),
        };
        cx.err(at(&sname, Some(row), Some(&survey.header[ty_col.unwrap_or(0)])), format!("this {what} is never closed (no `end {what}`)"));
    }
    if unlabeled > 0 {
        cx.warn(at(&sname, None, Some("label")), format!("{unlabeled} question(s) have no label: their name is shown instead"));
    }
    if !renamed.is_empty() {
        let n = renamed.len();
        let shown: Vec<String> = renamed.into_iter().take(12).collect();
        cx.warn(
            at(&sname, None, Some(&survey.header[name_col.unwrap_or(0)])),
            format!(
                "{n} name(s) are not field ids ([a-z][a-z0-9_]*) and were renamed: {}{}",
                shown.join(", "),
                if n > 12 { ", …" } else { "" }
            ),
        );
    }

    // --- expressions --------------------------------------------------------------------------
    let names_snapshot = names.clone();
    let mut resolve = |n: &str| -> Result<String, XError> {
        match names_snapshot.get(n).map(|i| &i.target) {
            Some(Target::Field { id, ack: false }) => Ok(format!("${{{id}}}")),
            // An acknowledge is yes/no here; XLSForm compares it with 'OK'.
            Some(Target::Field { id, ack: true }) => Ok(format!("if(${{{id}}}, 'OK', '')")),
            Some(Target::Today) => Ok("today()".into()),
            Some(Target::Meta) => Err(XError::Invalid(format!(
                "`${{{n}}}` is record metadata (row {}) that shidao keeps itself and no expression can read",
                names_snapshot[n].row
            ))),
            // Checked below, with both places named.
            Some(Target::Group) if names_snapshot[n].dropped.is_some() => Ok("${left_out}".into()),
            Some(Target::Group) => Err(XError::Invalid(format!("`${{{n}}}` names a group (row {}), not a field", names_snapshot[n].row))),
            None => Err(XError::Invalid(format!("`${{{n}}}` names no field on the survey sheet"))),
        }
    };
    // Pass 2: translate. `deps` holds, per field id, the names each expression reads.
    let mut deps: HashMap<String, (u32, Vec<String>)> = HashMap::new();
    let mut refs_of: Vec<(String, u32, String, String)> = Vec::new(); // (referrer id, row, column, referred name)
    for s in &mut secs {
        let mut sec_reads: Vec<String> = Vec::new();
        if let Some((col, row, src)) = s.relevant.clone() {
            match tr_checked(&src, &mut resolve) {
                Ok((text, ns)) => {
                    s.relevant = Some((col.clone(), row, text));
                    sec_reads.extend(ns.iter().cloned());
                    for n in ns {
                        refs_of.push((format!("group {}", s.id), row, col.clone(), n));
                    }
                }
                Err(e) => {
                    let dropped = report(cx, at(&sname, Some(row), Some(&col)), &format!("the group `{}`", s.id), e);
                    if dropped {
                        s.dropped = true;
                    }
                    s.relevant = None;
                }
            }
        }
        if s.dropped {
            continue;
        }
        for q in s.qs.iter_mut() {
            translate_q(q, &mut resolve, cx, &sname, &mut names, &mut deps, &mut refs_of);
            for sub in q.subs.iter_mut() {
                translate_q(sub, &mut resolve, cx, &sname, &mut names, &mut deps, &mut refs_of);
            }
            // A question of a group with `relevant` reads what the group's relevance reads.
            for id in std::iter::once(&q.field.id).chain(q.subs.iter().map(|s| &s.field.id)) {
                if let Some(d) = deps.get_mut(id) {
                    d.1.extend(sec_reads.iter().cloned());
                }
            }
            if q.field.kind == FieldKind::Repeat && !q.dropped && q.subs.iter().all(|s| s.dropped) {
                let why = if q.subs.is_empty() { "it has no questions" } else { "all its questions are left out" };
                cx.warn(at(&sname, Some(q.row), None), format!("the repeat `{}` is left out: {why}", q.field.id));
                q.dropped = true;
                if let Some(n) = &q.name
                    && let Some(info) = names.get_mut(n) {
                        info.dropped = Some(format!("the repeat is empty ({why})"));
                    }
            }
        }
    }
    if secs.iter().any(|s| s.dropped) {
        for s in secs.iter_mut().filter(|s| s.dropped) {
            for q in s.qs.iter_mut() {
                q.dropped = true;
                if let Some(info) = q.name.as_ref().and_then(|n| names.get_mut(n)) {
                    info.dropped = Some(format!("its group `{}` is left out", s.id));
                }
            }
        }
    }
    // Pass 3: nothing kept may read a left-out row.
    let kept_ids: HashSet<String> = secs
        .iter()
        .filter(|s| !s.dropped)
        .flat_map(|s| s.qs.iter().filter(|q| !q.dropped).flat_map(|q| std::iter::once(q).chain(q.subs.iter().filter(|s| !s.dropped))))
        .map(|q| q.field.id.clone())
        .collect();
    for (who, row, col, n) in &refs_of {
        let referrer_kept = who.starts_with("group ") || kept_ids.contains(who);
        if !referrer_kept {
            continue;
        }
        if let Some(info) = names.get(n)
            && let Some(why) = &info.dropped {
                cx.err(
                    at(&sname, Some(*row), Some(col)),
                    format!("refers to `${{{n}}}` (survey row {}), which shidao cannot hold: {why}", info.row),
                );
            }
    }
    // Dependency cycles over relevance, calculations and required-when (ODK Validate's check).
    let id_of: HashMap<String, String> = names
        .iter()
        .filter_map(|(n, i)| if let Target::Field { id, .. } = &i.target { Some((n.clone(), id.clone())) } else { None })
        .collect();
    if let Some(cycle) = find_cycle(&deps, &id_of) {
        let rows: Vec<String> = cycle.iter().map(|id| format!("`{id}` (row {})", deps.get(id).map_or(0, |d| d.0))).collect();
        let first_row = cycle.first().and_then(|id| deps.get(id)).map(|d| d.0);
        cx.err(at(&sname, first_row, None), format!("these fields depend on each other in a cycle: {}", rows.join(" → ")));
    }

    // --- assemble ----------------------------------------------------------------------------
    let mut sections = Vec::new();
    let mut row_of: HashMap<String, u32> = HashMap::new();
    for s in secs {
        if s.dropped {
            continue;
        }
        let mut fields = Vec::new();
        for q in s.qs {
            if q.dropped {
                continue;
            }
            row_of.insert(q.field.id.clone(), q.row);
            let mut f = q.field;
            for sub in q.subs.into_iter().filter(|s| !s.dropped) {
                row_of.insert(sub.field.id.clone(), sub.row);
                f.fields.push(sub.field);
            }
            fields.push(f);
        }
        if fields.is_empty() {
            if s.row.is_some() {
                cx.warn(at(&sname, s.row, None), format!("the group `{}` is left out: it has no questions left", s.id));
            }
            continue;
        }
        row_of.insert(s.id.clone(), s.row.unwrap_or(0));
        sections.push(Section { id: s.id, label: s.label, relevant: s.relevant.map(|r| r.2), fields });
    }
    if sections.is_empty() && cx.errors.is_empty() {
        let left: Vec<u32> = names
            .values()
            .filter(|i| i.dropped.is_some() || matches!(i.target, Target::Meta | Target::Today))
            .map(|i| i.row)
            .collect();
        let first = left.iter().min().copied();
        let tcol = survey.header[ty_col.unwrap_or(0)].clone();
        let mut rows: Vec<String> = left.iter().map(u32::to_string).collect();
        rows.sort_by_key(|r| r.parse::<u32>().unwrap_or(0));
        cx.err(
            at(&sname, first, first.map(|_| tcol.as_str())),
            if rows.is_empty() {
                "the form has no questions".to_string()
            } else {
                format!("every row is left out or is metadata (rows {}): the form has nothing shidao can hold", rows.join(", "))
            },
        );
    }
    if !cx.errors.is_empty() {
        return None;
    }
    let date_field = sections.iter().flat_map(|s| &s.fields).find(|f| f.kind == FieldKind::Date).map(|f| f.id.clone());
    // Meanings: each names the field its row became.
    let mut meanings = std::collections::BTreeMap::new();
    for (meaning, row, col) in &meaning_rows {
        if !shidao_core::template::meaning::MEANINGS.iter().any(|(n, _, _)| n == meaning) {
            cx.err(at(&sname, Some(*row), Some(col.as_str())), format!("unknown meaning `{meaning}` (see docs/templates.md for the list)"));
            continue;
        }
        match row_of.iter().find(|(_, r)| **r == *row) {
            Some((field, _)) => {
                if let Some(other) = meanings.insert(meaning.clone(), field.clone()) {
                    cx.err(at(&sname, Some(*row), Some(col.as_str())), format!("meaning `{meaning}` is already given to `{other}`"));
                }
            }
            None => cx.warn(at(&sname, Some(*row), Some(col.as_str())), format!("meaning `{meaning}` is dropped with its row")),
        }
    }
    if !cx.errors.is_empty() {
        return None;
    }
    let def = TemplateDef { id, version, title: title_label, description: None, filled_by, date_field, sections, scores: Vec::new(), meanings };
    let json = match serde_json::to_string_pretty(&def) {
        Ok(j) => j,
        Err(e) => {
            cx.err(at("workbook", None, None), format!("the template cannot be written: {e}"));
            return None;
        }
    };
    match Template::from_json(file_name, &json) {
        Ok(t) => Some(Imported { json, template: Arc::new(t), warnings: Vec::new() }),
        Err(e) => {
            // A meaning the loader refuses is placed at the row that declared it.
            let meaning_row = meaning_rows.iter().find(|(m, ..)| e.field == "meanings" && e.problem.contains(&format!("`{m}`"))).map(|(_, r, _)| *r);
            let row = row_of.get(&e.field).copied().filter(|r| *r > 0).or(meaning_row);
            cx.err(at(&sname, row, None), format!("field `{}`: {}", e.field, e.problem));
            None
        }
    }
}

/// The settings sheet's `form_title` columns.
fn texts_of_settings(s: &Sheet, cx: &mut Ctx) -> Texts {
    let t = texts_of(s, "form_title", cx);
    if t.cols.is_empty() { texts_of(s, "title", cx) } else { t }
}

fn new_q(row: u32, name: Option<String>, id: String, kind: FieldKind, label: Label) -> Q {
    Q {
        row,
        name,
        field: Field {
            id,
            kind,
            label,
            hint: None,
            required: Required::Always(false),
            relevant: None,
            constraint: None,
            constraint_message: None,
            options: Vec::new(),
            scale: Vec::new(),
            min: None,
            max: None,
            unit: None,
            compute: None,
            fields: Vec::new(),
            min_rows: None,
            max_rows: None,
            links_to: None,
        },
        exprs: Vec::new(),
        inherited: Vec::new(),
        subs: Vec::new(),
        dropped: false,
    }
}

fn inherited(stack: &[Frame]) -> Vec<(String, u32, String)> {
    stack.iter().filter_map(|f| if let Frame::Nested(_, Some(r)) = f { Some(r.clone()) } else { None }).collect()
}

/// Opens an untitled section for questions outside any group, when the last one is a group's.
fn ensure_section(secs: &mut Vec<Sec>, stack: &[Frame], ids: &mut HashSet<String>, title: &Label) {
    if !stack.is_empty() {
        return;
    }
    if secs.last().is_some_and(|s| s.row.is_none()) {
        return;
    }
    let id = make_id(&format!("part_{}", secs.len() + 1), "part", ids);
    secs.push(Sec { id, label: title.clone(), row: None, relevant: None, qs: Vec::new(), dropped: false });
}

/// Adds a question where the stack says; returns its index among the section's questions.
fn push_q(secs: &mut [Sec], stack: &[Frame], q: Q) -> usize {
    let sec_idx = stack.iter().find_map(|f| if let Frame::Section(i, _) = f { Some(*i) } else { None });
    let repeat = stack.iter().rev().find_map(|f| if let Frame::Repeat(i, _) = f { Some(*i) } else { None });
    let Some(i) = sec_idx.or_else(|| secs.len().checked_sub(1)) else { return 0 };
    let sec = &mut secs[i];
    match repeat {
        Some(ri) if ri < sec.qs.len() => {
            sec.qs[ri].subs.push(q);
            ri
        }
        _ => {
            sec.qs.push(q);
            sec.qs.len() - 1
        }
    }
}

/// Translates and parses an expression: the text and the names it reads.
fn tr_checked(src: &str, resolve: &mut dyn FnMut(&str) -> Result<String, XError>) -> Result<(String, Vec<String>), XError> {
    let t = translate(src, resolve)?;
    if let Err(e) = Expr::parse(&t.text) {
        return Err(XError::Invalid(format!("`{src}` does not parse: {} (translated as `{}`)", e.problem, t.text)));
    }
    Ok((t.text, t.names))
}

/// Reports a translation failure; returns whether the row is left out (unsupported + skipping).
fn report(cx: &mut Ctx, place: Place, what: &str, e: XError) -> bool {
    match e {
        XError::Invalid(m) => {
            cx.err(place, format!("{what}: {m}"));
            false
        }
        XError::Unsupported(m) => cx.unsupported(place, format!("{what}: {m}")),
    }
}

#[allow(clippy::too_many_arguments)]
fn translate_q(
    q: &mut Q,
    resolve: &mut dyn FnMut(&str) -> Result<String, XError>,
    cx: &mut Ctx,
    sname: &str,
    names: &mut HashMap<String, NameInfo>,
    deps: &mut HashMap<String, (u32, Vec<String>)>,
    refs_of: &mut Vec<(String, u32, String, String)>,
) {
    if q.dropped {
        return;
    }
    let what = format!("`{}`", q.name.clone().unwrap_or_else(|| q.field.id.clone()));
    let mut read: Vec<String> = Vec::new();
    let mut rel_parts: Vec<String> = Vec::new();
    let mut refs: Vec<(u32, String, String)> = Vec::new();
    let mut ok = true;
    for (col, row, src) in q.inherited.clone() {
        match tr_checked(&src, resolve) {
            Ok((text, ns)) => {
                rel_parts.push(text);
                for n in ns {
                    refs.push((row, col.clone(), n.clone()));
                    read.push(n);
                }
            }
            // Reported once, at the group's row; every question inside goes with it.
            Err(e) => {
                if cx.reported.insert((row, col.clone())) {
                    report(cx, at(sname, Some(row), Some(&col)), "the group", e);
                }
                ok = false;
            }
        }
    }
    for (meaning, col, src) in q.exprs.clone() {
        match tr_checked(&src, resolve) {
            Ok((text, ns)) => {
                for n in ns {
                    refs.push((q.row, col.clone(), n.clone()));
                    if meaning != "constraint" {
                        read.push(n);
                    }
                }
                match meaning {
                    "relevant" => rel_parts.push(text),
                    "compute" => q.field.compute = Some(text),
                    "required" => q.field.required = Required::When(text),
                    "constraint" => q.field.constraint = Some(text),
                    _ => {}
                }
            }
            Err(e) => {
                report(cx, at(sname, Some(q.row), Some(&col)), &what, e);
                ok = false;
            }
        }
    }
    if !ok {
        // Either an error is already reported, or the row is left out with a warning.
        q.dropped = true;
        if let Some(info) = q.name.as_ref().and_then(|n| names.get_mut(n)) {
            info.dropped = Some("one of its expressions cannot be held".into());
        }
        return;
    }
    q.field.relevant = match rel_parts.len() {
        0 => None,
        1 => rel_parts.pop(),
        _ => Some(rel_parts.iter().map(|p| format!("({p})")).collect::<Vec<_>>().join(" and ")),
    };
    for (row, col, n) in refs {
        refs_of.push((q.field.id.clone(), row, col, n));
    }
    deps.insert(q.field.id.clone(), (q.row, read));
}

/// A cycle among the fields' dependencies, as field ids in order, if there is one.
fn find_cycle(deps: &HashMap<String, (u32, Vec<String>)>, id_of: &HashMap<String, String>) -> Option<Vec<String>> {
    fn visit(
        id: &str,
        deps: &HashMap<String, (u32, Vec<String>)>,
        id_of: &HashMap<String, String>,
        state: &mut HashMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(id) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|p| p == id).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(id.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(id.to_string(), 1);
        path.push(id.to_string());
        if let Some((_, names)) = deps.get(id) {
            for n in names {
                if let Some(next) = id_of.get(n)
                    && let Some(c) = visit(next, deps, id_of, state, path) {
                        return Some(c);
                    }
            }
        }
        path.pop();
        state.insert(id.to_string(), 2);
        None
    }
    let mut state = HashMap::new();
    let mut keys: Vec<&String> = deps.keys().collect();
    keys.sort();
    for k in keys {
        let mut path = Vec::new();
        if let Some(c) = visit(k, deps, id_of, &mut state, &mut path) {
            return Some(c);
        }
    }
    None
}
