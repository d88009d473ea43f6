# The path a tablet app takes through the generated Python bindings (the same library and API
# the Kotlin and Swift apps get): open a store, list the forms, fill a lesson observation with
# every kind of field, get refused a bad value, read the score, submit; then sync with a real
# shidao-server on loopback: enrol two tablets, see the other tablet's edit merged and the
# listener told, see a note made beside an approval set aside (refused, kept, shown), fetch a
# photo, cancel a hung sync, get clear errors for bad addresses and a revoked tablet. Run by `cargo test -p shidao-bindings` (uniffi's foreign-language harness;
# tests/foreign.rs starts the server and passes its address and codes as SHIDAO_TEST_* variables).

import asyncio
import os
import tempfile
import time
import urllib.request

from shidao import (
    AnswerValue, ChangeListener, Editor, FieldKind, FormsListener, RecordFilter, RecordStatus, Role,
    ShidaoError, ShidaoStore, SyncCancel, SyncProgress,
)


def refused(kind, call):
    try:
        call()
    except kind as e:
        return e
    raise AssertionError(f"expected {kind.__name__}, but the call succeeded")


class FormsHeard(FormsListener):
    def __init__(self):
        self.told = 0

    def on_forms_changed(self):
        self.told += 1


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
off_task = rec.field("snap_off_task", row)  # a bound field, as an input widget holds it
assert off_task.field_id() == "snap_off_task" and off_task.row() == row
off_task.set_integer(3)
rec.increment("q_recall", 3)
rec.increment("q_open", 1)
for f in ["r_goal", "r_content", "r_method", "r_feedback", "r_participation", "r_interest", "r_thinking", "r_outcome",
          "r_bearing", "r_language", "r_board", "r_it"]:
    rec.set_answer(f, AnswerValue.RATING(3))
rec.splice_text("strengths", 0, 0, "朗读指导到位。")
rec.set_answer("problems", AnswerValue.LONG_TEXT("提问集中在前排。"))
rec.set_answer("suggestions", AnswerValue.LONG_TEXT("扩大提问面。"))
rec.field("double_coded").set_bool(False)
rec.sign("teacher_signature", signer="李老师")

# 4. A bad value is refused with the field named.
e = refused(ShidaoError.InvalidAnswer, lambda: rec.set_answer("duration", AnswerValue.DURATION(500)))
assert e.field == "duration" and "maximum" in e.reason, (e.field, e.reason)
e = refused(ShidaoError.InvalidAnswer, lambda: rec.set_answer("snap_off_task", AnswerValue.INTEGER(50), row))
assert e.field == "snap_off_task", e.field
e = refused(ShidaoError.InvalidAnswer, lambda: rec.set_answer("lesson_date", AnswerValue.DATE("2026-02-30")))
assert e.field == "lesson_date", e.field
e = refused(ShidaoError.InvalidAnswer, lambda: off_task.set_integer(50))
assert e.field == "snap_off_task", e.field
e = refused(ShidaoError.InvalidAnswer, lambda: rec.field("no_such_field"))
assert e.field == "no_such_field", e.field
assert rec.answer("snap_off_task", "en", row).answer == AnswerValue.INTEGER(3)

# 5. Validation, computed values and the score.
view = rec.read("zh")
assert view.validation.clean, view.validation.issues
answers = {a.field: a for a in view.answers if a.row is None}
assert answers["period"].by.user == "prin-02" and answers["period"].by.device == "ipad-1"
assert answers["strengths"].answer == AnswerValue.LONG_TEXT("朗读指导到位。")
computed = {c.field: c for c in view.computed}
assert computed["questions_total"].number == 4.0, computed["questions_total"]
total = next(s for s in view.scores if s.id == "total")
# Every rating 一般 (70 points): a pass, not a failure.
assert total.value == 70.0 and total.band == "合格", total

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


# 8. Sync. Two inspectors of one school, as the server's admin set them up, each with a one-time
#    code. Wang's tablet enrols; the identity (and its token, never shown) stays in the store.
def env(name):
    value = os.environ.get(name)
    if value is None:
        raise AssertionError(f"{name} is not set: run this script through `cargo test -p shidao-bindings`")
    return value


class Steps(SyncProgress):
    def __init__(self):
        self.steps = []

    def on_progress(self, status):
        self.steps.append(status)


def run(coroutine):
    return asyncio.run(coroutine)


server = env("SHIDAO_TEST_SERVER")
wang_store = ShidaoStore.open(os.path.join(tmp, "wang.db"))
assert wang_store.enrolment() is None
e = refused(ShidaoError.Unauthorized, lambda: run(wang_store.sync()))
assert e.code == "not_enrolled", e
# The admin's QR code (from the relay's person page or `admin enrol-qr`) carries the server's
# address and the code; the bare code is not a QR payload.
e = refused(ShidaoError.BadEnrolPayload, lambda: run(wang_store.enrol_from_qr(env("SHIDAO_TEST_CODE_WANG"), "王老师的平板")))
assert "shidao://enrol" in e.reason, e.reason
wang = run(wang_store.enrol_from_qr(env("SHIDAO_TEST_QR_WANG"), "王老师的平板"))
assert (wang.editor.user, wang.editor.role, wang.name, wang.server_url) == ("wang", Role.INSPECTOR, "王老师", server), wang
assert wang_store.enrolment() == wang
refused(ShidaoError.EnrolCodeUsed, lambda: run(ShidaoStore.open_in_memory().enrol_from_qr(env("SHIDAO_TEST_QR_WANG"), "x")))

# 9. Li's store is encrypted at rest with a 32-byte key (from the platform's keystore; here
#    random). Bad addresses: a clear Network error, and Li's code is not used up.
li_path = os.path.join(tmp, "li.db")
li_key = os.urandom(32)
li_store = ShidaoStore.open_encrypted(li_path, li_key)
assert li_store.is_encrypted() and not wang_store.is_encrypted()
e = refused(ShidaoError.Network, lambda: run(li_store.enrol("shidao.example.cn", env("SHIDAO_TEST_CODE_LI"), "x")))
assert "bad server address" in e.reason, e.reason
e = refused(ShidaoError.Network, lambda: run(li_store.enrol(env("SHIDAO_TEST_UNREACHABLE"), env("SHIDAO_TEST_CODE_LI"), "x")))
assert "cannot reach the server" in e.reason, e.reason

# 10. Wang fills a lesson observation and a visit with a photo, and syncs with progress.
lesson = wang_store.create_record("classroom-observation", "ouhai-a", wang.editor)
lesson.set_answer("topic", AnswerValue.TEXT("勾股定理"))
lesson.set_answer("class_name", AnswerValue.TEXT("八(2)班"))
walk = wang_store.create_record("inspection-visit", "ouhai-a", wang.editor)
photo = b"\xff\xd8python photo"
photo_hash = walk.attach_file("walk_photo", photo, "image/jpeg", "walk.jpg").hash
steps = Steps()
first = run(wang_store.sync(steps))
assert (first.pushed, first.pulled, first.uploaded, first.refused) == (2, 0, 1, []), first
assert steps.steps[-1].done and steps.steps[-1].pushed == 2 and len(steps.steps) == first.rounds, steps.steps

# 11. Li's tablet enrols and syncs: both records arrive, the listener is told, the photo is fetched.
li_seen = Seen()
li_store.set_change_listener(li_seen)
li_forms = FormsHeard()
li_store.set_forms_listener(li_forms)
li = run(li_store.enrol_from_qr(env("SHIDAO_TEST_QR_LI"), "李老师的平板"))
got = run(li_store.sync())
# The sync brought what Li picks from lists: her school, the district's task, the indicator bank.
picks = li_store.reference_data()
assert [(s.id, s.name) for s in picks.schools] == [("ouhai-a", "瓯海区实验中学")], picks.schools
assert [t.title for t in picks.tasks] == ["新增优质学位"] and picks.tasks[0].school is None, picks.tasks
assert [(i.name, i.unit, i.target) for i in picks.indicators] == [("骨干教师占比", "%", 25.0)], picks.indicators
both = sorted([lesson.id(), walk.id()])
assert got.pulled == 2 and got.changed == both, got
assert sorted(li_seen.ids) == both, li_seen.ids
refused(ShidaoError.NotFound, lambda: li_store.attachment(photo_hash))
assert run(li_store.fetch_attachment(photo_hash)).bytes == photo

# 12. Both edit offline; Li syncs, then Wang: her edit is merged, his listener told, the field
#     both changed keeps both values with their authors.
lesson_li = li_store.open_record(lesson.id(), li.editor)
lesson_li.set_answer("teacher_name", AnswerValue.TEXT("陈老师"))
lesson_li.set_answer("class_name", AnswerValue.TEXT("八(3)班"))
lesson.set_answer("class_name", AnswerValue.TEXT("八(2)班（实验）"))
assert run(li_store.sync()).pushed == 1
wang_seen = Seen()
wang_store.set_change_listener(wang_seen)
merged = run(wang_store.sync())
assert (merged.pushed, merged.pulled, merged.changed) == (1, 1, [lesson.id()]), merged
assert wang_seen.ids == [lesson.id()], wang_seen.ids
lesson.reload()
teacher = lesson.answer("teacher_name", "zh")
assert teacher.answer == AnswerValue.TEXT("陈老师") and teacher.by.user == "li", teacher
assert {c.by.user for c in lesson.answer("class_name", "zh").conflicts} == {"wang", "li"}


# 12b. A note beside an approval. Wang fills and submits a lesson record; Li holds its draft
#      copy; the supervisor approves it on the relay; Li's note, made offline on her draft, is
#      refused (`sealed`) and set aside: her tablet shows the approved record without it, lists
#      the note with the reason, and can show the refused copy; nothing stays refused.
def fill_lesson(r):
    for f, v in [("lesson_date", AnswerValue.DATE("2026-03-02")), ("purpose", AnswerValue.CHOICE("routine")),
                 ("grade", AnswerValue.CHOICE("g8")), ("class_name", AnswerValue.TEXT("八(1)班")),
                 ("subject", AnswerValue.CHOICE("math")), ("teacher_name", AnswerValue.TEXT("赵老师")),
                 ("topic", AnswerValue.TEXT("一元一次方程")), ("period", AnswerValue.INTEGER(1)),
                 ("scheduled_start", AnswerValue.TIME("08:00")), ("duration", AnswerValue.DURATION(40)),
                 ("students_present", AnswerValue.INTEGER(40)), ("licc_dimensions", AnswerValue.CHOICES(["culture"])),
                 ("strengths", AnswerValue.LONG_TEXT("导入自然。")), ("problems", AnswerValue.LONG_TEXT("练习偏少。")),
                 ("suggestions", AnswerValue.LONG_TEXT("增加练习。")), ("double_coded", AnswerValue.BOOL(False))]:
        r.set_answer(f, v)
    snap = r.add_row("snapshots")
    r.set_answer("snap_minute", AnswerValue.INTEGER(5), snap)
    r.set_answer("snap_teacher_activity", AnswerValue.CHOICE("lecture"), snap)
    r.set_answer("snap_most_learning", AnswerValue.BOOL(True), snap)
    r.set_answer("snap_off_task", AnswerValue.INTEGER(1), snap)
    r.increment("q_recall", 2)
    r.increment("q_open", 1)
    for f in ["r_goal", "r_content", "r_method", "r_feedback", "r_participation", "r_interest", "r_thinking", "r_outcome",
              "r_bearing", "r_language", "r_board", "r_it"]:
        r.set_answer(f, AnswerValue.RATING(3))
    r.sign("teacher_signature", signer="赵老师")


graded = wang_store.create_record("classroom-observation", "ouhai-a", wang.editor)
fill_lesson(graded)
assert graded.read("zh").validation.clean, graded.read("zh").validation.issues
assert run(wang_store.sync()).refused == []
run(li_store.sync())
graded_li = li_store.open_record(graded.id(), li.editor)
graded.submit()
assert run(wang_store.sync()).refused == []
urllib.request.urlopen(f"{env('SHIDAO_TEST_CONTROL')}/approve/{graded.id()}").read()
late = AnswerValue.LONG_TEXT("李：课后补充一条建议。")
graded_li.set_answer("suggestions", late)
report = run(li_store.sync())
assert [(r.record, r.code) for r in report.refused] == [(graded.id(), "sealed")], report.refused
[entry] = report.set_aside
assert (entry.record, entry.code, entry.fields, entry.kept_aside, entry.reapplied) == \
    (graded.id(), "sealed", ["suggestions"], ["suggestions"], []), entry
assert li_store.set_aside(graded.id()) == [entry] and li_store.set_aside() == [entry]
graded_li.reload()
assert graded_li.status() == RecordStatus.APPROVED
assert graded_li.answer("suggestions", "zh").answer != late
aside = li_store.set_aside_record(entry.id, li.editor, "zh")
assert next(a for a in aside.answers if a.field == "suggestions").answer == late
again = run(li_store.sync())
assert again.refused == [] and again.set_aside == [], again
print(f"set aside: {entry.record} {entry.fields} ({entry.code}: {entry.reason})")

# 12b. The programme's own 听课评价表 (an XLSForm its admin published on the relay) came with the
#      first syncs: both tablets offer it beside the built-in forms, Li's forms listener heard of
#      it. Wang fills one; Li receives it and reads the form's own total.
form_id = env("SHIDAO_TEST_FORM")
assert first.forms_changed and got.forms_changed and li_forms.told >= 1, (first, got, li_forms.told)
for s in (wang_store, li_store):
    offered = {t.id: t for t in s.templates("zh")}
    assert form_id in offered and len(offered) == 7, list(offered)
tingke = offered[form_id]
assert tingke.title == "听课评价表", tingke.title
tk = wang_store.create_record(form_id, "ouhai-a", wang.editor)
tk.set_answer("lesson_date", AnswerValue.DATE("2026-11-24"))
tk.set_answer("teacher", AnswerValue.TEXT("赵老师"))
tk.set_answer("subject", AnswerValue.CHOICE("math"))
for f in ["r_goal", "r_content", "r_method", "r_student", "r_effect"]:
    tk.set_answer(f, AnswerValue.RATING(4))
assert run(wang_store.sync()).refused == []
assert run(li_store.sync()).changed == [tk.id()]
tk_li = li_store.open_record(tk.id(), li.editor)
tk_total = {c.field: c for c in tk_li.read("zh").computed}["total"]
assert tk_total.number == 80.0, tk_total

# 13. A sync waiting on a server that never answers stops at once when cancelled.
async def cancel_a_hung_sync():
    cancel = SyncCancel()
    task = asyncio.ensure_future(wang_store.sync(cancel=cancel))
    await asyncio.sleep(0.5)
    assert not task.done(), "the sync waits on the silent server"
    asked = time.monotonic()
    cancel.cancel()
    try:
        await asyncio.wait_for(task, 5)
    except ShidaoError.Cancelled:
        return time.monotonic() - asked
    raise AssertionError("the sync was not cancelled")


wang_store.set_server_url(env("SHIDAO_TEST_HANG"))
print(f"cancel took effect in {run(cancel_a_hung_sync()) * 1000:.0f} ms")
wang_store.set_server_url(server)

# 14. Li's app restarts: a wrong key (or a short one) is refused and changes nothing; the right
#     key opens the store with its enrolment, records and photo, and it syncs. Nothing in its
#     files is readable without the key.
li_count = li_store.count_records()
del li_store
e = refused(ShidaoError.WrongKey, lambda: ShidaoStore.open_encrypted(li_path, bytes(32)))
assert "does not open with this key" in e.reason, e.reason
refused(ShidaoError.WrongKey, lambda: ShidaoStore.open_encrypted(li_path, b"short"))
li_store = ShidaoStore.open_encrypted(li_path, li_key)
assert li_store.is_encrypted() and li_store.enrolment() == li and li_store.count_records() == li_count
assert li_store.attachment(photo_hash).bytes == photo
assert run(li_store.sync()).refused == []
for name in os.listdir(tmp):
    if name.startswith("li.db"):
        with open(os.path.join(tmp, name), "rb") as f:
            raw = f.read()
        for marker in ["勾股定理", "陈老师", "wang"]:
            assert marker.encode() not in raw, f"{name} shows {marker!r} without the key"

# 15. Li's tablet is revoked: her next sync is refused with the reason; Wang's goes on.
urllib.request.urlopen(f"{env('SHIDAO_TEST_CONTROL')}/revoke/{li.editor.device}").read()
e = refused(ShidaoError.Unauthorized, lambda: run(li_store.sync()))
assert e.code == "revoked" and "revoked" in e.reason, e
assert run(wang_store.sync()).refused == []
print("python app flow: ok")
