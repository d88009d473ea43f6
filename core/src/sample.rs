//! Plausible answers for any field, and filling a whole record with them.
//!
//! Used by tests (every template must be fillable to a clean validation through the public API),
//! by benchmarks and load generators, and by the demo that seeds a server. Deterministic for a
//! given seed.

use crate::record::{Answer, AttachmentRef, FieldRef, Record, RecordError, Result};
use crate::template::{CompiledField, FieldKind};

/// A small deterministic random source (xorshift64*), enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() { None } else { items.get(self.below(items.len())) }
    }
}

const PHRASES: &[&str] = &[
    "教师能围绕学习目标设计问题链，学生参与度较高。",
    "小组合作分工明确，但汇报环节时间偏紧。",
    "建议增加开放性问题，给学生留出思考时间。",
    "课堂评价语言较为单一，可以更具体地反馈。",
    "作业设计分层，兼顾了学有余力和需提升的学生。",
    "板书结构清晰，重点突出。",
];

fn clamp_to(f: &CompiledField, x: f64) -> f64 {
    let lo = f.def.min.unwrap_or(f64::MIN);
    let hi = f.def.max.unwrap_or(f64::MAX);
    x.clamp(lo, hi)
}

/// Answers worth trying for a field, most plausible first. Empty for fields without answers.
pub fn candidates(f: &CompiledField, today: &str, rng: &mut Rng) -> Vec<Answer> {
    let ints = |rng: &mut Rng| -> Vec<i64> {
        let mut v: Vec<i64> = [1.0, 3.0, 0.0, 10.0, 30.0, 45.0, 100.0]
            .iter()
            .map(|x| clamp_to(f, *x) as i64)
            .collect();
        v.rotate_left(rng.below(3));
        if let Some(max) = f.def.max {
            v.push(max as i64);
        }
        if let Some(min) = f.def.min {
            v.push(min as i64);
        }
        v.dedup();
        v
    };
    match f.kind() {
        FieldKind::Text => {
            let base = if f.def.links_to.is_some() {
                vec![format!("linked-{:x}", rng.next_u64() % 0xffff_ffff)]
            } else {
                vec![format!("{}{}", f.def.label.zh.chars().take(6).collect::<String>(), rng.below(100)), "示例".into()]
            };
            base.into_iter().map(Answer::Text).collect()
        }
        FieldKind::LongText => {
            let a = rng.pick(PHRASES).copied().unwrap_or("记录");
            let b = rng.pick(PHRASES).copied().unwrap_or("记录");
            vec![Answer::LongText(format!("{a}{b}"))]
        }
        FieldKind::Integer => ints(rng).into_iter().map(Answer::Integer).collect(),
        FieldKind::Duration => ints(rng).into_iter().filter(|n| *n >= 0).map(Answer::Duration).collect(),
        FieldKind::Counter => ints(rng).into_iter().map(Answer::Counter).collect(),
        FieldKind::Decimal => [1.5, 2.0, 0.5, 6.0, 12.5, 3000.0, 0.0]
            .iter()
            .map(|x| Answer::Decimal(clamp_to(f, *x)))
            .collect(),
        FieldKind::SingleChoice => {
            let mut v: Vec<Answer> = f.def.options.iter().map(|o| Answer::Choice(o.value.clone())).collect();
            let n = v.len();
            v.rotate_left(rng.below(n));
            v
        }
        FieldKind::MultipleChoice => {
            let opts: Vec<String> = f.def.options.iter().map(|o| o.value.clone()).collect();
            let first = rng.below(opts.len());
            let mut v = vec![Answer::Choices(vec![opts[first].clone()])];
            if opts.len() > 1 {
                v.insert(0, Answer::Choices(vec![opts[first].clone(), opts[(first + 1) % opts.len()].clone()]));
            }
            v
        }
        FieldKind::Rating => {
            let mut levels: Vec<i64> = f.def.scale.iter().map(|l| l.value).collect();
            levels.sort_unstable();
            // Mid-to-high levels first: the most common ratings, and no evidence note needed.
            let n = levels.len();
            let mut order: Vec<i64> = levels.iter().rev().skip(1).take(n.saturating_sub(2)).copied().collect();
            let k = rng.below(order.len());
            order.rotate_left(k);
            order.extend(levels.iter().rev().copied());
            order.dedup();
            order.into_iter().map(Answer::Rating).collect()
        }
        FieldKind::YesNo => {
            let first = rng.below(2) == 0;
            vec![Answer::Bool(first), Answer::Bool(!first)]
        }
        FieldKind::Date => {
            // Recent days first, then the term's start, then a deadline ahead.
            let t = crate::date::parse_date(today).unwrap_or(20_000);
            [-2, 0, -75, 180, -400].iter().map(|d| Answer::Date(crate::date::format_date(t + d))).collect()
        }
        FieldKind::Time => ["08:00", "08:45", "09:30", "14:10"].iter().map(|t| Answer::Time(t.to_string())).collect(),
        FieldKind::Attachment => {
            let bytes = format!("photo {}", rng.next_u64());
            vec![Answer::Attachment(AttachmentRef {
                hash: crate::store::content_hash(bytes.as_bytes()),
                name: "photo.jpg".into(),
                mime: "image/jpeg".into(),
                size: bytes.len() as u64,
            })]
        }
        FieldKind::Signature | FieldKind::Repeat | FieldKind::Computed | FieldKind::Note => Vec::new(),
    }
}

/// Sets one field to the first candidate the record accepts. Returns whether one was accepted.
pub fn answer_field(record: &mut Record, at: &FieldRef, rng: &mut Rng) -> Result<bool> {
    let f = record
        .template()
        .field(&at.field)
        .cloned()
        .ok_or_else(|| RecordError::UnknownField(at.field.clone()))?;
    if f.kind() == FieldKind::Signature {
        let signer = if rng.below(2) == 0 { None } else { Some("张老师".to_string()) };
        record.sign(at, signer, None)?;
        return Ok(true);
    }
    let today = record.today();
    for a in candidates(&f, &today, rng) {
        match record.set_answer(at, a) {
            Ok(()) => return Ok(true),
            Err(RecordError::Invalid(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Fills every field of a record (rows included: `rows` per repeat, at least its minimum) and
/// then answers whatever validation still asks for. The record ends clean unless the template
/// asks for something no candidate satisfies; the remaining issues are the caller's to see.
pub fn fill_completely(record: &mut Record, rows: usize, rng: &mut Rng) -> Result<()> {
    let template = record.template().clone();
    for f in template.top_fields() {
        match f.kind() {
            FieldKind::Repeat => {
                let want = rows.max(f.def.min_rows.unwrap_or(0) as usize).min(f.def.max_rows.unwrap_or(u32::MAX) as usize);
                while record.row_ids(f.id())?.len() < want {
                    record.add_row(f.id(), None)?;
                }
                for row in record.row_ids(f.id())? {
                    for s in template.sub_fields(f.id()) {
                        if s.kind().holds_answer() {
                            answer_field(record, &FieldRef::in_row(s.id(), &row), rng)?;
                        }
                    }
                }
            }
            k if k.holds_answer() => {
                answer_field(record, &FieldRef::top(f.id()), rng)?;
            }
            _ => {}
        }
    }
    // Answers can change what is required or allowed elsewhere: settle what is left.
    for _ in 0..4 {
        let report = record.validate();
        if report.is_clean() {
            break;
        }
        for issue in report.blocking() {
            let Some(f) = template.field(&issue.field.field) else { continue };
            if f.kind() == FieldKind::Repeat {
                record.add_row(f.id(), None)?;
                continue;
            }
            let mut local = Rng::new(rng.next_u64());
            let cands = candidates(f, &record.today(), &mut local);
            for a in cands {
                if record.set_answer(&issue.field, a).is_ok() && record.validate().blocking().all(|i| i.field != issue.field) {
                    break;
                }
            }
        }
    }
    Ok(())
}

