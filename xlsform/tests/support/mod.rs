//! Test support: writing XLSForm workbooks with rust_xlsxwriter, and the 听课评价表 (lesson
//! evaluation) workbook that `tests/forms/tingke-pingjia.xlsx` (at the repository root) is a copy of.
//!
//! The example `cargo run -p shidao-xlsform --example tingke-pingjia -- tests/forms/tingke-pingjia.xlsx`
//! writes the same
//! workbook; the test `committed_tingke_workbook_is_the_generated_one` keeps the committed copy
//! equal (as imported) to what [`tingke_pingjia`] writes. What must stay true: the form is
//! realistic and Chinese first, and uses a group, a repeat, choices, ratings, `relevant`,
//! `constraint`, `calculation` and two label languages.

#![allow(dead_code)]

use rust_xlsxwriter::Workbook;

/// A sheet as rows of cells; a cell that parses as a number is written as a number.
pub type SheetRows<'a> = (&'a str, Vec<Vec<&'a str>>);

/// An .xlsx workbook with these sheets.
pub fn workbook(sheets: &[SheetRows<'_>]) -> Vec<u8> {
    let mut wb = Workbook::new();
    for (name, rows) in sheets {
        let ws = wb.add_worksheet();
        ws.set_name(*name).expect("sheet name");
        for (r, row) in rows.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                if cell.is_empty() {
                    continue;
                }
                match cell.parse::<f64>() {
                    Ok(n) if !cell.starts_with('0') || *cell == "0" => ws.write_number(r as u32, c as u16, n).map(|_| ()),
                    _ => ws.write_string(r as u32, c as u16, *cell).map(|_| ()),
                }
                .expect("cell");
            }
        }
    }
    wb.save_to_buffer().expect("workbook")
}

const SURVEY_HEADER: [&str; 15] = [
    "type",
    "name",
    "label::中文 (zh)",
    "label::English (en)",
    "hint::中文 (zh)",
    "hint::English (en)",
    "required",
    "relevant",
    "constraint",
    "constraint_message::中文 (zh)",
    "constraint_message::English (en)",
    "calculation",
    "appearance",
    "parameters",
    "meaning",
];

/// The 听课评价表: a lesson evaluation as a district's 教研室 would write it (version 2026090101).
pub fn tingke_pingjia() -> Vec<u8> {
    tingke(false)
}

/// Its next version (2026090102): the same form plus one question, `homework` (作业布置), so
/// that records of the first version stay valid under their own version.
pub fn tingke_pingjia_v2() -> Vec<u8> {
    tingke(true)
}

fn tingke(v2: bool) -> Vec<u8> {
    // type, name, zh, en, hint zh, hint en, required, relevant, constraint, msg zh, msg en, calculation, appearance, parameters
    let q = |cells: &[&'static str]| -> Vec<&'static str> { cells.to_vec() };
    let mut survey = vec![SURVEY_HEADER.to_vec()];
    survey.extend([
        q(&["begin_group", "info", "基本信息", "Lesson"]),
        q(&["date", "lesson_date", "听课日期", "Lesson date", "", "", "yes"]),
        q(&["text", "teacher", "授课教师", "Teacher", "", "", "yes"]),
        q(&["select_one subject", "subject", "学科", "Subject", "", "", "yes", "", "", "", "", "", "", "", "lesson.subject"]),
        q(&["select_one grade", "grade", "年级", "Grade", "", "", "yes"]),
        q(&["text", "topic", "课题", "Topic"]),
        q(&["select_one lesson_type", "lesson_type", "课型", "Lesson type"]),
        q(&[
            "integer", "students", "学生人数", "Students present", "", "", "", "", ". >= 1 and . <= 60",
            "人数应在 1 到 60 之间", "Between 1 and 60 students",
        ]),
        q(&["end_group"]),
        q(&["begin_group", "rating", "课堂评价", "Lesson rating", "每项 1–5 级", "Each item on five levels"]),
        q(&["select_one level", "r_goal", "教学目标明确、适切", "Clear, fitting learning goals", "", "", "yes", "", "", "", "", "", "likert"]),
        q(&["select_one level", "r_content", "教学内容准确、容量适当", "Accurate content, right amount", "", "", "yes", "", "", "", "", "", "likert"]),
        q(&["select_one level", "r_method", "教学方法灵活、有效", "Flexible, effective methods", "", "", "yes", "", "", "", "", "", "likert"]),
        q(&["select_one level", "r_student", "学生主动参与、思维活跃", "Students take part and think", "", "", "yes", "", "", "", "", "", "likert", "", "lesson.participation"]),
        q(&["range", "r_effect", "教学效果", "Learning outcome", "", "", "yes", "", "", "", "", "", "", "start=1 end=5 step=1"]),
        q(&[
            "calculate", "total", "总分", "Total", "", "", "", "", "", "", "",
            "(${r_goal} + ${r_content} + ${r_method} + ${r_student} + ${r_effect}) * 4", "", "", "lesson.total",
        ]),
        q(&["note", "total_note", "总分（满分 100）：${total}", "Total (out of 100): ${total}"]),
        q(&["text", "low_reason", "总分低于 60 分的主要原因", "Main reasons for a total below 60", "", "", "yes", "${total} < 60"]),
    ]);
    if v2 {
        survey.push(q(&["text", "homework", "作业布置", "Homework set", "", "", "", "", "", "", "", "", "multiline"]));
    }
    survey.extend([
        q(&["end_group"]),
        q(&["begin_repeat", "moments", "课堂片段记录", "Lesson moments", "按时间顺序记录", "In order of time"]),
        q(&["time", "m_time", "时间", "Time"]),
        q(&["select_one phase", "m_phase", "教学环节", "Phase of the lesson"]),
        q(&["text", "m_note", "观察记录", "What was seen", "", "", "", "", "", "", "", "", "multiline"]),
        q(&["end_repeat"]),
        q(&["begin_group", "summary", "总体评价", "Summary"]),
        q(&[
            "select_multiple strengths", "strengths", "本课亮点（最多三项）", "Strengths (three at most)", "", "", "", "",
            "count-selected(.) <= 3", "最多选三项", "Three at most",
        ]),
        q(&["text", "strength_other", "其他亮点", "Other strength", "", "", "", "selected(${strengths}, 'other')"]),
        q(&["acknowledge", "feedback_given", "已与授课教师当面交流", "Feedback given to the teacher in person"]),
        q(&["text", "advice", "改进建议", "Advice", "", "", "", "${feedback_given} = 'OK'", "string-length(.) >= 5", "建议至少写 5 个字", "Write at least 5 characters", "", "multiline"]),
        q(&["image", "photo", "课堂照片", "Photo of the lesson"]),
        q(&["end_group"]),
    ]);
    let c = |l: &'static str, n: &'static str, zh: &'static str, en: &'static str| vec![l, n, zh, en];
    let choices = vec![
        vec!["list_name", "name", "label::中文 (zh)", "label::English (en)"],
        c("level", "1", "不达标", "Below standard"),
        c("level", "2", "待改进", "Needs improvement"),
        c("level", "3", "合格", "Pass"),
        c("level", "4", "良好", "Good"),
        c("level", "5", "优秀", "Excellent"),
        c("subject", "chinese", "语文", "Chinese"),
        c("subject", "math", "数学", "Mathematics"),
        c("subject", "english", "英语", "English"),
        c("subject", "physics", "物理", "Physics"),
        c("subject", "chemistry", "化学", "Chemistry"),
        c("subject", "biology", "生物", "Biology"),
        c("subject", "history", "历史", "History"),
        c("subject", "geography", "地理", "Geography"),
        c("subject", "politics", "道德与法治", "Morality and law"),
        c("grade", "g7", "七年级", "Grade 7"),
        c("grade", "g8", "八年级", "Grade 8"),
        c("grade", "g9", "九年级", "Grade 9"),
        c("lesson_type", "new", "新授课", "New content"),
        c("lesson_type", "review", "复习课", "Review"),
        c("lesson_type", "exercise", "练习课", "Practice"),
        c("lesson_type", "lab", "实验课", "Lab"),
        c("phase", "intro", "导入", "Introduction"),
        c("phase", "explore", "探究", "Exploration"),
        c("phase", "practice", "练习", "Practice"),
        c("phase", "summary", "小结", "Summary"),
        c("strengths", "goal", "目标达成度高", "Goals reached"),
        c("strengths", "interaction", "师生互动充分", "Rich interaction"),
        c("strengths", "thinking", "重视思维训练", "Thinking skills"),
        c("strengths", "technology", "信息技术融合自然", "Technology used well"),
        c("strengths", "other", "其他", "Other"),
    ];
    let settings = vec![
        vec!["form_title::中文 (zh)", "form_title::English (en)", "form_id", "version", "filled_by", "default_language"],
        vec!["听课评价表", "Lesson evaluation", "tingke-pingjia", if v2 { "2026090102" } else { "2026090101" }, "inspector, expert", "中文 (zh)"],
    ];
    workbook(&[("survey", survey), ("choices", choices), ("settings", settings)])
}
