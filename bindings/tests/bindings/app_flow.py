# The path a tablet app takes, offline, through the generated Python bindings (the same library
# and API the Kotlin and Swift apps get): open a store, list the forms, fill a lesson observation
# with every kind of field, get refused a bad value, read the score, submit. Run by
# `cargo test -p shidao-bindings` (uniffi's foreign-language harness; see tests/foreign.rs).

import tempfile
import os

from shidao import (
    AnswerValue, ChangeListener, Editor, FieldKind, RecordFilter, RecordStatus, Role,
    ShidaoError, ShidaoStore,
)


def refused(kind, call):
    try:
        call()
    except kind as e:
        return e
    raise AssertionError(f"expected {kind.__name__}, but the call succeeded")


class Seen(ChangeListener):
    def __init__(self):
        self.ids = []

    def on_record_changed(self, record_id):
        self.ids.append(record_id)


# 1. A principal's tablet opens its store.
tmp = tempfile.mkdtemp(prefix="shidao-py")
store = ShidaoStore.open(os.path.join(tmp, "shidao.db"))
principal = Editor(user="prin-02", device="ipad-1", role=Role.PRINCIPAL)
seen = Seen()
store.set_change_listener(seen)

# 2. The forms, in English, with what a screen needs to draw them.
templates = {t.id: t for t in store.templates("en")}
assert len(templates) == 6, list(templates)
obs = templates["classroom-observation"]
assert obs.title == "Lesson observation record", obs.title
fields = {f.id: f for s in obs.sections for f in s.fields}
assert fields["r_goal"].kind == FieldKind.RATING and len(fields["r_goal"].scale) == 5
assert all(level.description for level in fields["r_goal"].scale)
assert fields["duration"].unit is not None and fields["duration"].min == 10.0
assert [f.id for f in fields["snapshots"].sub_fields][:2] == ["snap_minute", "snap_teacher_activity"]

# 3. A lesson observation, every kind of field filled.
rec = store.create_record("classroom-observation", "ouhai-033", principal)
assert seen.ids == [rec.id()], seen.ids
rec.set_answer("lesson_date", AnswerValue.DATE("2026-03-02"))
rec.set_answer("purpose", AnswerValue.CHOICE("principal"))
rec.set_answer("grade", AnswerValue.CHOICE("g7"))
rec.set_answer("class_name", AnswerValue.TEXT("七(1)班"))
rec.set_answer("subject", AnswerValue.CHOICE("english"))
rec.set_answer("teacher_name", AnswerValue.TEXT("李老师"))
rec.set_answer("topic", AnswerValue.TEXT("Unit 3 reading"))
rec.set_answer("period", AnswerValue.INTEGER(2))
rec.set_answer("scheduled_start", AnswerValue.TIME("09:40"))
rec.set_answer("duration", AnswerValue.DURATION(40))
rec.set_answer("students_present", AnswerValue.INTEGER(38))
rec.set_answer("licc_dimensions", AnswerValue.CHOICES(["curriculum", "culture"]))
row = rec.add_row("snapshots")
rec.set_answer("snap_minute", AnswerValue.INTEGER(10), row)
rec.set_answer("snap_teacher_activity", AnswerValue.CHOICE("lecture"), row)
rec.set_answer("snap_most_learning", AnswerValue.BOOL(True), row)
rec.set_answer("snap_off_task", AnswerValue.INTEGER(3), row)
rec.increment("q_recall", 3)
rec.increment("q_open", 1)
for f in ["r_goal", "r_content", "r_method", "r_feedback", "r_participation", "r_interest", "r_thinking", "r_outcome"]:
    rec.set_answer(f, AnswerValue.RATING(3))
rec.splice_text("strengths", 0, 0, "朗读指导到位。")
rec.set_answer("problems", AnswerValue.LONG_TEXT("提问集中在前排。"))
rec.set_answer("suggestions", AnswerValue.LONG_TEXT("扩大提问面。"))
rec.set_answer("double_coded", AnswerValue.BOOL(False))
rec.sign("teacher_signature", signer="李老师")

# 4. A bad value is refused with the field named.
e = refused(ShidaoError.InvalidAnswer, lambda: rec.set_answer("duration", AnswerValue.DURATION(500)))
assert e.field == "duration" and "maximum" in e.reason, (e.field, e.reason)
e = refused(ShidaoError.InvalidAnswer, lambda: rec.set_answer("snap_off_task", AnswerValue.INTEGER(50), row))
assert e.field == "snap_off_task", e.field
e = refused(ShidaoError.InvalidAnswer, lambda: rec.set_answer("lesson_date", AnswerValue.DATE("2026-02-30")))
assert e.field == "lesson_date", e.field

# 5. Validation, computed values and the score.
view = rec.read("zh")
assert view.validation.clean, view.validation.issues
answers = {a.field: a for a in view.answers if a.row is None}
assert answers["period"].by.user == "prin-02" and answers["period"].by.device == "ipad-1"
assert answers["strengths"].answer == AnswerValue.LONG_TEXT("朗读指导到位。")
computed = {c.field: c for c in view.computed}
assert computed["questions_total"].number == 4.0, computed["questions_total"]
total = next(s for s in view.scores if s.id == "total")
assert total.value == 50.0 and total.band == "待改进", total

# 6. Submit, then list.
rec.submit()
assert rec.status() == RecordStatus.SUBMITTED
assert [s.id for s in store.list_records(RecordFilter(status=RecordStatus.SUBMITTED))] == [rec.id()]
assert store.list_records(RecordFilter(template="inspection-visit")) == []
refused(ShidaoError.NotAllowed, lambda: rec.submit())

# 7. A panic inside a call is an error, and the store goes on.
e = refused(ShidaoError.Other, lambda: store.debug_panic("python test"))
assert "internal error" in e.reason, e.reason
assert store.count_records() == 1
print("python app flow: ok")
