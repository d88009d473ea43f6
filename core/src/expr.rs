//! The expression language of templates: relevance, constraints, required-when and computed values.
//!
//! Close to XLSForm's so that an XLSForm import can map onto it: `${field}` references, `.` for the
//! answer under test, `and`/`or`, comparisons, arithmetic, and a few functions (documented in
//! `docs/templates.md`). Parsing is done once when a template loads; evaluation is pure and never
//! panics: an unanswered field is [`EValue::Empty`], arithmetic on empty is empty and a comparison
//! with empty is false, so a half-filled form evaluates without errors.

use std::fmt;

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum EValue {
    Empty,
    Num(f64),
    Str(String),
    Bool(bool),
    /// The values of a repeat sub-field over all rows, or the rows of a repeat, or the ticked
    /// options of a multiple choice.
    List(Vec<EValue>),
}

impl EValue {
    pub fn is_empty(&self) -> bool {
        match self {
            EValue::Empty => true,
            EValue::Str(s) => s.is_empty(),
            EValue::List(l) => l.iter().all(EValue::is_empty),
            _ => false,
        }
    }

    /// Truth as XLSForm sees it: empty, 0, "" and false are false.
    pub fn truthy(&self) -> bool {
        match self {
            EValue::Empty => false,
            EValue::Num(n) => *n != 0.0 && !n.is_nan(),
            EValue::Str(s) => !s.is_empty(),
            EValue::Bool(b) => *b,
            EValue::List(l) => l.iter().any(|v| !v.is_empty()),
        }
    }

    pub fn as_num(&self) -> Option<f64> {
        match self {
            EValue::Num(n) if n.is_finite() => Some(*n),
            EValue::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            EValue::Str(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
            _ => None,
        }
    }

    fn flatten_into(&self, out: &mut Vec<EValue>) {
        match self {
            EValue::List(l) => l.iter().for_each(|v| v.flatten_into(out)),
            EValue::Empty => {}
            v => out.push(v.clone()),
        }
    }
}

impl fmt::Display for EValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EValue::Empty => Ok(()),
            EValue::Num(n) => write!(f, "{}", fmt_num(*n)),
            EValue::Str(s) => f.write_str(s),
            EValue::Bool(b) => write!(f, "{b}"),
            EValue::List(l) => {
                let parts: Vec<String> = l.iter().map(|v| v.to_string()).collect();
                f.write_str(&parts.join(" "))
            }
        }
    }
}

/// Formats a number without a trailing `.0` and with at most 4 decimals.
pub fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        let s = format!("{n:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Str(String),
    Ref(String),
    /// `.`: the answer under test.
    Current,
    Neg(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

macro_rules! funcs {
    ($($variant:ident => $name:literal, $min:literal, $max:expr;)*) => {
        /// The functions of the language.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Func { $($variant),* }
        impl Func {
            fn lookup(name: &str) -> Option<Func> {
                match name { $($name => Some(Func::$variant),)* _ => None }
            }
            pub fn name(self) -> &'static str {
                match self { $(Func::$variant => $name),* }
            }
            fn arity(self) -> (usize, usize) {
                match self { $(Func::$variant => ($min, $max)),* }
            }
        }
    };
}

funcs! {
    Not => "not", 1, 1;
    If => "if", 3, 3;
    Answered => "answered", 1, 1;
    Coalesce => "coalesce", 1, usize::MAX;
    Selected => "selected", 2, 2;
    CountSelected => "count_selected", 1, 1;
    Count => "count", 1, usize::MAX;
    Sum => "sum", 1, usize::MAX;
    Mean => "mean", 1, usize::MAX;
    Min => "min", 1, usize::MAX;
    Max => "max", 1, usize::MAX;
    Round => "round", 1, 2;
    Abs => "abs", 1, 1;
    StringLength => "string_length", 1, 1;
    Today => "today", 0, 0;
    DaysBetween => "days_between", 2, 2;
    Agreement => "agreement", 3, usize::MAX;
    Concat => "concat", 1, usize::MAX;
    Regex => "regex", 2, 2;
    True => "true", 0, 0;
    False => "false", 0, 0;
}

/// Why an expression does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expression `{source_text}`: {problem} (at character {at})")]
pub struct ParseError {
    pub source_text: String,
    pub problem: String,
    pub at: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ref(String),
    Ident(String),
    Dot,
    LParen,
    RParen,
    Comma,
    Op(&'static str),
}

struct Lexer<'a> {
    src: &'a str,
    chars: Vec<(usize, char)>,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn err(&self, at: usize, problem: impl Into<String>) -> ParseError {
        ParseError { source_text: self.src.to_string(), problem: problem.into(), at }
    }

    fn tokens(mut self) -> Result<Vec<(usize, Tok)>, ParseError> {
        let mut out = Vec::new();
        while self.pos < self.chars.len() {
            let (at, c) = self.chars[self.pos];
            if c.is_whitespace() {
                self.pos += 1;
                continue;
            }
            let tok = match c {
                '(' => { self.pos += 1; Tok::LParen }
                ')' => { self.pos += 1; Tok::RParen }
                ',' => { self.pos += 1; Tok::Comma }
                '+' | '-' | '*' | '/' | '=' => { self.pos += 1; Tok::Op(op_str(c)) }
                '!' | '<' | '>' => {
                    self.pos += 1;
                    let eq = self.chars.get(self.pos).map(|p| p.1) == Some('=');
                    if eq { self.pos += 1; }
                    match (c, eq) {
                        ('!', true) => Tok::Op("!="),
                        ('<', true) => Tok::Op("<="),
                        ('>', true) => Tok::Op(">="),
                        ('<', false) => Tok::Op("<"),
                        ('>', false) => Tok::Op(">"),
                        _ => return Err(self.err(at, "`!` must be followed by `=`")),
                    }
                }
                '$' => {
                    if self.chars.get(self.pos + 1).map(|p| p.1) != Some('{') {
                        return Err(self.err(at, "`$` must start a `${field}` reference"));
                    }
                    self.pos += 2;
                    let start = self.pos;
                    while self.pos < self.chars.len() && self.chars[self.pos].1 != '}' {
                        self.pos += 1;
                    }
                    if self.pos >= self.chars.len() {
                        return Err(self.err(at, "unclosed `${`"));
                    }
                    let name: String = self.chars[start..self.pos].iter().map(|p| p.1).collect();
                    self.pos += 1;
                    if !valid_id(&name) {
                        return Err(self.err(at, format!("`{name}` is not a field id")));
                    }
                    Tok::Ref(name)
                }
                '\'' | '"' => {
                    self.pos += 1;
                    let start = self.pos;
                    while self.pos < self.chars.len() && self.chars[self.pos].1 != c {
                        self.pos += 1;
                    }
                    if self.pos >= self.chars.len() {
                        return Err(self.err(at, "unclosed string"));
                    }
                    let s: String = self.chars[start..self.pos].iter().map(|p| p.1).collect();
                    self.pos += 1;
                    Tok::Str(s)
                }
                c if c.is_ascii_digit() || (c == '.' && self.peek_digit(1)) => {
                    let start = self.pos;
                    while self.pos < self.chars.len()
                        && (self.chars[self.pos].1.is_ascii_digit() || self.chars[self.pos].1 == '.')
                    {
                        self.pos += 1;
                    }
                    let s: String = self.chars[start..self.pos].iter().map(|p| p.1).collect();
                    Tok::Num(s.parse().map_err(|_| self.err(at, format!("bad number `{s}`")))?)
                }
                '.' => { self.pos += 1; Tok::Dot }
                c if c.is_ascii_alphabetic() || c == '_' => {
                    let start = self.pos;
                    while self.pos < self.chars.len()
                        && (self.chars[self.pos].1.is_ascii_alphanumeric()
                            || matches!(self.chars[self.pos].1, '_' | '-'))
                    {
                        self.pos += 1;
                    }
                    let s: String = self.chars[start..self.pos].iter().map(|p| p.1).collect();
                    match s.as_str() {
                        "and" => Tok::Op("and"),
                        "or" => Tok::Op("or"),
                        "div" => Tok::Op("/"),
                        "mod" => Tok::Op("mod"),
                        _ => Tok::Ident(s),
                    }
                }
                other => return Err(self.err(at, format!("unexpected character `{other}`"))),
            };
            out.push((at, tok));
        }
        Ok(out)
    }

    fn peek_digit(&self, ahead: usize) -> bool {
        self.chars.get(self.pos + ahead).is_some_and(|p| p.1.is_ascii_digit())
    }
}

fn op_str(c: char) -> &'static str {
    match c {
        '+' => "+",
        '-' => "-",
        '*' => "*",
        '/' => "/",
        _ => "=",
    }
}

/// Whether `s` is a valid field id: `[a-z][a-z0-9_]*`.
pub fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

struct Parser {
    src: String,
    toks: Vec<(usize, Tok)>,
    pos: usize,
    /// How deeply the expression nests here (brackets, calls, minus signs).
    depth: usize,
}

/// Limits that keep parsing, evaluating and dropping an expression off the edge of the stack:
/// the templates' longest expressions are far below them.
const MAX_TOKENS: usize = 2_000;
const MAX_DEPTH: usize = 64;

impl Parser {
    fn err(&self, problem: impl Into<String>) -> ParseError {
        let at = self.toks.get(self.pos).map_or(self.src.chars().count(), |t| t.0);
        ParseError { source_text: self.src.clone(), problem: problem.into(), at }
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }

    fn bin_level(&mut self, level: usize) -> Result<Expr, ParseError> {
        const LEVELS: [&[(&str, BinOp)]; 5] = [
            &[("or", BinOp::Or)],
            &[("and", BinOp::And)],
            &[
                ("=", BinOp::Eq),
                ("!=", BinOp::Ne),
                ("<", BinOp::Lt),
                ("<=", BinOp::Le),
                (">", BinOp::Gt),
                (">=", BinOp::Ge),
            ],
            &[("+", BinOp::Add), ("-", BinOp::Sub)],
            &[("*", BinOp::Mul), ("/", BinOp::Div), ("mod", BinOp::Mod)],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut lhs = self.bin_level(level + 1)?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op(s)) => LEVELS[level].iter().find(|(name, _)| name == s).map(|p| p.1),
                _ => None,
            };
            let Some(op) = op else { return Ok(lhs) };
            self.pos += 1;
            let rhs = self.bin_level(level + 1)?;
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(rhs));
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.err(format!("the expression nests deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        let e = if self.peek() == Some(&Tok::Op("-")) {
            self.pos += 1;
            self.unary().map(|e| Expr::Neg(Box::new(e)))
        } else {
            self.primary()
        };
        self.depth -= 1;
        e
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.err("expression ends too early"));
        };
        self.pos += 1;
        match tok {
            Tok::Num(n) => Ok(Expr::Num(n)),
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::Ref(r) => Ok(Expr::Ref(r)),
            Tok::Dot => Ok(Expr::Current),
            Tok::LParen => {
                let e = self.bin_level(0)?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(e)
            }
            Tok::Ident(name) => {
                let func = Func::lookup(&name).ok_or_else(|| {
                    self.pos -= 1;
                    self.err(format!("unknown function `{name}`"))
                })?;
                self.expect(Tok::LParen, "`(` after a function name")?;
                let mut args = Vec::new();
                if self.peek() != Some(&Tok::RParen) {
                    loop {
                        args.push(self.bin_level(0)?);
                        if self.peek() == Some(&Tok::Comma) {
                            self.pos += 1;
                        } else {
                            break;
                        }
                    }
                }
                self.expect(Tok::RParen, "`)` closing the arguments")?;
                let (lo, hi) = func.arity();
                if args.len() < lo || args.len() > hi {
                    return Err(self.err(format!(
                        "`{name}` takes {} arguments, got {}",
                        if lo == hi { lo.to_string() } else if hi == usize::MAX { format!("at least {lo}") } else { format!("{lo} to {hi}") },
                        args.len()
                    )));
                }
                if let (Func::Regex, Some(Expr::Str(pattern))) = (func, args.get(1))
                    && let Err(e) = compile_regex(pattern)
                {
                    return Err(self.err(format!("`regex` pattern `{pattern}` is not a valid regular expression: {e}")));
                }
                Ok(Expr::Call(func, args))
            }
            other => {
                self.pos -= 1;
                Err(self.err(format!("unexpected {}", describe(&other))))
            }
        }
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), ParseError> {
        if self.peek() == Some(&want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected {what}")))
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Op(o) => format!("operator `{o}`"),
        Tok::RParen => "`)`".into(),
        Tok::Comma => "`,`".into(),
        other => format!("{other:?}"),
    }
}

/// What an expression can read while it is evaluated.
pub trait Env {
    /// The value of `${name}` from where the expression stands.
    fn lookup(&self, name: &str) -> EValue;
    /// The answer under test (`.`).
    fn current(&self) -> EValue {
        EValue::Empty
    }
    /// Today's date, `YYYY-MM-DD`.
    fn today(&self) -> String;
}

impl Expr {
    /// Parses an expression.
    pub fn parse(src: &str) -> Result<Expr, ParseError> {
        let lexer = Lexer { src, chars: src.char_indices().collect(), pos: 0 };
        let toks = lexer.tokens()?;
        if toks.len() > MAX_TOKENS {
            return Err(ParseError {
                source_text: src.chars().take(80).collect(),
                problem: format!("the expression is longer than {MAX_TOKENS} tokens"),
                at: 0,
            });
        }
        let mut p = Parser { src: src.to_string(), toks, pos: 0, depth: 0 };
        let e = p.bin_level(0)?;
        if p.pos != p.toks.len() {
            return Err(p.err("unexpected text after the expression"));
        }
        Ok(e)
    }

    /// Every `${field}` the expression refers to.
    pub fn refs(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Ref(r) = e {
                out.push(r.as_str());
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        f(self);
        match self {
            Expr::Neg(e) => e.walk(f),
            Expr::Bin(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.walk(f)),
            _ => {}
        }
    }

    /// Evaluates the expression; never fails: what cannot be computed is empty.
    pub fn eval(&self, env: &dyn Env) -> EValue {
        match self {
            Expr::Num(n) => EValue::Num(*n),
            Expr::Str(s) => EValue::Str(s.clone()),
            Expr::Ref(r) => env.lookup(r),
            Expr::Current => env.current(),
            Expr::Neg(e) => match e.eval(env).as_num() {
                Some(n) => EValue::Num(-n),
                None => EValue::Empty,
            },
            Expr::Bin(op, a, b) => bin(*op, a, b, env),
            Expr::Call(f, args) => call(*f, args, env),
        }
    }
}

fn bin(op: BinOp, a: &Expr, b: &Expr, env: &dyn Env) -> EValue {
    match op {
        BinOp::Or => return EValue::Bool(a.eval(env).truthy() || b.eval(env).truthy()),
        BinOp::And => return EValue::Bool(a.eval(env).truthy() && b.eval(env).truthy()),
        _ => {}
    }
    let (x, y) = (a.eval(env), b.eval(env));
    match op {
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            if x.is_empty() || y.is_empty() {
                // An unanswered field equals nothing, but differs from everything.
                return EValue::Bool(op == BinOp::Ne && !(x.is_empty() && y.is_empty()));
            }
            let ord = match (x.as_num(), y.as_num()) {
                (Some(p), Some(q)) => p.partial_cmp(&q),
                _ => Some(x.to_string().cmp(&y.to_string())),
            };
            let Some(ord) = ord else { return EValue::Bool(false) };
            use std::cmp::Ordering::*;
            EValue::Bool(match op {
                BinOp::Eq => ord == Equal,
                BinOp::Ne => ord != Equal,
                BinOp::Lt => ord == Less,
                BinOp::Le => ord != Greater,
                BinOp::Gt => ord == Greater,
                _ => ord != Less,
            })
        }
        _ => {
            let (Some(p), Some(q)) = (x.as_num(), y.as_num()) else { return EValue::Empty };
            let r = match op {
                BinOp::Add => p + q,
                BinOp::Sub => p - q,
                BinOp::Mul => p * q,
                BinOp::Div if q != 0.0 => p / q,
                BinOp::Mod if q != 0.0 => p % q,
                _ => return EValue::Empty,
            };
            if r.is_finite() { EValue::Num(r) } else { EValue::Empty }
        }
    }
}

fn numbers(args: &[Expr], env: &dyn Env) -> Vec<f64> {
    let mut flat = Vec::new();
    for a in args {
        a.eval(env).flatten_into(&mut flat);
    }
    flat.iter().filter_map(EValue::as_num).collect()
}

fn call(f: Func, args: &[Expr], env: &dyn Env) -> EValue {
    let num = |n: f64| if n.is_finite() { EValue::Num(n) } else { EValue::Empty };
    match f {
        Func::True => EValue::Bool(true),
        Func::False => EValue::Bool(false),
        Func::Not => EValue::Bool(!args[0].eval(env).truthy()),
        Func::If => {
            if args[0].eval(env).truthy() { args[1].eval(env) } else { args[2].eval(env) }
        }
        Func::Answered => EValue::Bool(!args[0].eval(env).is_empty()),
        Func::Coalesce => args.iter().map(|a| a.eval(env)).find(|v| !v.is_empty()).unwrap_or(EValue::Empty),
        Func::Selected => {
            let set = args[0].eval(env);
            let want = args[1].eval(env).to_string();
            let mut flat = Vec::new();
            set.flatten_into(&mut flat);
            EValue::Bool(flat.iter().any(|v| v.to_string() == want))
        }
        Func::CountSelected => {
            let mut flat = Vec::new();
            args[0].eval(env).flatten_into(&mut flat);
            EValue::Num(flat.iter().filter(|v| !v.is_empty()).count() as f64)
        }
        Func::Count => {
            let mut flat = Vec::new();
            for a in args {
                match a.eval(env) {
                    // A repeat's rows are lists themselves: each counts as one.
                    EValue::List(items) => flat.extend(items.into_iter().filter(|v| !v.is_empty() || matches!(v, EValue::List(_)))),
                    v if !v.is_empty() => flat.push(v),
                    _ => {}
                }
            }
            EValue::Num(flat.len() as f64)
        }
        Func::Sum => {
            let ns = numbers(args, env);
            if ns.is_empty() { EValue::Empty } else { num(ns.iter().sum()) }
        }
        Func::Mean => {
            let ns = numbers(args, env);
            if ns.is_empty() { EValue::Empty } else { num(ns.iter().sum::<f64>() / ns.len() as f64) }
        }
        Func::Min => numbers(args, env).into_iter().reduce(f64::min).map_or(EValue::Empty, num),
        Func::Max => numbers(args, env).into_iter().reduce(f64::max).map_or(EValue::Empty, num),
        Func::Round => {
            let Some(x) = args[0].eval(env).as_num() else { return EValue::Empty };
            let digits = args.get(1).and_then(|d| d.eval(env).as_num()).unwrap_or(0.0).clamp(0.0, 10.0);
            let scale = 10f64.powi(digits as i32);
            num((x * scale).round() / scale)
        }
        Func::Abs => args[0].eval(env).as_num().map_or(EValue::Empty, |n| num(n.abs())),
        Func::StringLength => {
            let v = args[0].eval(env);
            EValue::Num(if v.is_empty() { 0.0 } else { v.to_string().chars().count() as f64 })
        }
        Func::Today => EValue::Str(env.today()),
        Func::DaysBetween => {
            let a = crate::date::parse_date(&args[0].eval(env).to_string());
            let b = crate::date::parse_date(&args[1].eval(env).to_string());
            match (a, b) {
                (Some(a), Some(b)) => EValue::Num((b - a) as f64),
                _ => EValue::Empty,
            }
        }
        Func::Agreement => {
            let Some(tol) = args[0].eval(env).as_num() else { return EValue::Empty };
            let (mut pairs, mut agree) = (0u32, 0u32);
            for pair in args[1..].chunks(2) {
                let [a, b] = pair else { continue };
                if let (Some(x), Some(y)) = (a.eval(env).as_num(), b.eval(env).as_num()) {
                    pairs += 1;
                    if (x - y).abs() <= tol + 1e-9 {
                        agree += 1;
                    }
                }
            }
            if pairs == 0 { EValue::Empty } else { EValue::Num(f64::from(agree) / f64::from(pairs)) }
        }
        Func::Concat => EValue::Str(args.iter().map(|a| a.eval(env).to_string()).collect()),
        Func::Regex => {
            // As XLSForm's regex(): true when the pattern matches somewhere in the text.
            let text = args[0].eval(env).to_string();
            EValue::Bool(regex_matches(&args[1].eval(env).to_string(), &text))
        }
    }
}

/// A `regex()` pattern, compiled with a size limit so that a hostile pattern cannot take the
/// memory of a device. Matching is linear in the text (no backtracking).
fn compile_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern).size_limit(1 << 20).dfa_size_limit(1 << 20).build()
}

/// Whether `pattern` matches somewhere in `text`; an invalid pattern matches nothing. Compiled
/// patterns are kept per thread (a form has a handful, evaluated on every validation).
fn regex_matches(pattern: &str, text: &str) -> bool {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static CACHE: RefCell<HashMap<String, Option<regex::Regex>>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(pattern) {
            if cache.len() >= 64 {
                cache.clear();
            }
            cache.insert(pattern.to_string(), compile_regex(pattern).ok());
        }
        cache.get(pattern).and_then(Option::as_ref).is_some_and(|re| re.is_match(text))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn deep_or_long_expressions_are_refused_not_a_stack_overflow() {
        // Found by the expression fuzz check: a thousand brackets overflowed the parser's stack.
        let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        assert!(Expr::parse(&deep).unwrap_err().problem.contains("nests deeper"));
        assert!(Expr::parse(&format!("{}1", "-".repeat(1_500))).unwrap_err().problem.contains("nests deeper"));
        let long = vec!["1"; 3_000].join(" + ");
        assert!(Expr::parse(&long).unwrap_err().problem.contains("longer than"));
        let fine = format!("{}1{}", "(".repeat(60), ")".repeat(60));
        assert!(Expr::parse(&fine).is_ok());
    }

    struct Map(HashMap<&'static str, EValue>, EValue);
    impl Env for Map {
        fn lookup(&self, name: &str) -> EValue {
            self.0.get(name).cloned().unwrap_or(EValue::Empty)
        }
        fn current(&self) -> EValue {
            self.1.clone()
        }
        fn today(&self) -> String {
            "2026-11-22".into()
        }
    }

    fn env() -> Map {
        let mut m = HashMap::new();
        m.insert("a", EValue::Num(3.0));
        m.insert("b", EValue::Num(4.0));
        m.insert("s", EValue::Str("tuimen".into()));
        m.insert("tags", EValue::List(vec![EValue::Str("x".into()), EValue::Str("y".into())]));
        m.insert("col", EValue::List(vec![EValue::Num(1.0), EValue::Empty, EValue::Num(5.0)]));
        Map(m, EValue::Num(7.0))
    }

    fn ev(src: &str) -> EValue {
        Expr::parse(src).expect("parses").eval(&env())
    }

    #[test]
    fn arithmetic_and_precedence() {
        assert_eq!(ev("${a} + ${b} * 2"), EValue::Num(11.0));
        assert_eq!(ev("(${a} + ${b}) * 2"), EValue::Num(14.0));
        assert_eq!(ev("-${a} + 10 div 4"), EValue::Num(-0.5));
        assert_eq!(ev("7 mod 4"), EValue::Num(3.0));
        assert_eq!(ev("1 / 0"), EValue::Empty);
        assert_eq!(ev("${missing} + 1"), EValue::Empty);
    }

    #[test]
    fn logic_and_comparisons() {
        assert_eq!(ev("${a} < ${b} and ${s} = 'tuimen'"), EValue::Bool(true));
        assert_eq!(ev("${missing} = 0"), EValue::Bool(false));
        assert_eq!(ev("${missing} != 0"), EValue::Bool(true));
        assert_eq!(ev(". >= 0 and . <= 10"), EValue::Bool(true));
        assert_eq!(ev("not(${a} = 3) or false()"), EValue::Bool(false));
        assert_eq!(ev("if(${a} > 2, 'big', 'small')"), EValue::Str("big".into()));
    }

    #[test]
    fn functions() {
        assert_eq!(ev("sum(${col})"), EValue::Num(6.0));
        assert_eq!(ev("mean(${col}, ${a})"), EValue::Num(3.0));
        assert_eq!(ev("count(${col})"), EValue::Num(2.0));
        assert_eq!(ev("selected(${tags}, 'y')"), EValue::Bool(true));
        assert_eq!(ev("count_selected(${tags})"), EValue::Num(2.0));
        assert_eq!(ev("round(2 / 3, 2)"), EValue::Num(0.67));
        assert_eq!(ev("days_between('2026-11-01', today())"), EValue::Num(21.0));
        assert_eq!(ev("agreement(1, 3, 4, 5, 2, 1, ${missing})"), EValue::Num(0.5));
        assert_eq!(ev("coalesce(${missing}, ${s})"), EValue::Str("tuimen".into()));
        assert_eq!(ev("string_length('课堂观察')"), EValue::Num(4.0));
    }

    #[test]
    fn concat_and_regex() {
        assert_eq!(ev("concat(${s}, '-', ${a}, ${missing})"), EValue::Str("tuimen-3".into()));
        assert_eq!(ev("regex(${s}, '^tui')"), EValue::Bool(true));
        assert_eq!(ev("regex(${s}, 'men$') and not(regex(${s}, '^men'))"), EValue::Bool(true));
        assert_eq!(ev("regex('13812345678', '^1[0-9]{10}$')"), EValue::Bool(true));
        assert_eq!(ev("regex('1381234', '^1[0-9]{10}$')"), EValue::Bool(false));
        let e = Expr::parse("regex(., '(unclosed')").unwrap_err();
        assert!(e.problem.contains("not a valid regular expression"), "{e}");
    }

    #[test]
    fn parse_errors_say_where() {
        let e = Expr::parse("${a} + ").unwrap_err();
        assert!(e.problem.contains("ends too early"), "{e}");
        let e = Expr::parse("frobnicate(1)").unwrap_err();
        assert!(e.problem.contains("unknown function `frobnicate`"), "{e}");
        let e = Expr::parse("if(1, 2)").unwrap_err();
        assert!(e.problem.contains("takes 3 arguments"), "{e}");
        assert!(Expr::parse("${Bad Id}").is_err());
        assert!(Expr::parse("'open").is_err());
        assert!(Expr::parse("(1").is_err());
    }

    #[test]
    fn refs_are_listed() {
        let e = Expr::parse("sum(${a}, ${b}) > ${c}").expect("parses");
        assert_eq!(e.refs(), vec!["a", "b", "c"]);
    }
}
