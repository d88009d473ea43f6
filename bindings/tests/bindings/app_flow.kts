// The path the Android app takes through the generated Kotlin bindings: open a store, list the
// forms, fill a lesson observation with every kind of field, get refused a bad value, read the
// score, take in another tablet's copy, submit; then sync with a real shidao-server on loopback:
// enrol two tablets, see the other tablet's edit merged and the listener told, fetch a photo,
// cancel a hung sync, reopen Li's encrypted store (a wrong key refused), get clear errors for
// bad addresses and a revoked tablet.
// Run by `cargo test -p shidao-bindings` (uniffi's foreign-language harness; tests/foreign.rs
// starts the server and passes its address and enrolment codes as SHIDAO_TEST_* variables).

import uniffi.shidao.*
import java.nio.file.Files
import kotlinx.coroutines.*

fun expect(ok: Boolean, what: () -> String) {
    if (!ok) throw AssertionError(what())
}

inline fun <reified E : Throwable> refused(block: () -> Unit): E {
    try {
        block()
    } catch (e: Throwable) {
        if (e is E) return e
        throw AssertionError("expected ${E::class.simpleName}, got $e", e)
    }
    throw AssertionError("expected ${E::class.simpleName}, but the call succeeded")
}

class Seen : ChangeListener {
    val ids: MutableList<String> = java.util.Collections.synchronizedList(mutableListOf<String>())
    override fun onRecordChanged(recordId: String) {
        ids.add(recordId)
    }
}

class FormsHeard : FormsListener {
    @Volatile var told = 0
    override fun onFormsChanged() {
        told += 1
    }
}

class Steps : SyncProgress {
    val steps: MutableList<SyncStatus> = java.util.Collections.synchronizedList(mutableListOf<SyncStatus>())
    override fun onProgress(status: SyncStatus) {
        steps.add(status)
    }
}

fun env(name: String): String =
    System.getenv(name) ?: throw AssertionError("$name is not set: run this script through `cargo test -p shidao-bindings` (tests/foreign.rs starts the server)")

// 1. An inspector's tablet opens its store in the app's private folder.
val dir = Files.createTempDirectory("shidao-kt")
val store = ShidaoStore.open(dir.resolve("shidao.db").toString())
val inspector = Editor(user = "insp-01", device = "tablet-a", role = Role.INSPECTOR)
val seen = Seen()
store.setChangeListener(seen)

// 2. The app lists the forms and has what it needs to draw the lesson observation.
val templates = store.templates("zh")
expect(templates.size == 6) { "six built-in templates, got ${templates.map { it.id }}" }
val obs = templates.first { it.id == "classroom-observation" }
expect(obs.title == "课堂观察记录表") { obs.title }
expect(Role.INSPECTOR in obs.filledBy) { "${obs.filledBy}" }
val fields = obs.sections.flatMap { it.fields }.associateBy { it.id }
val rGoal = fields.getValue("r_goal")
expect(rGoal.kind == FieldKind.RATING && rGoal.required) { "$rGoal" }
expect(rGoal.scale.map { it.value } == listOf(1L, 2L, 3L, 4L, 5L)) { "${rGoal.scale}" }
expect(rGoal.scale.all { !it.description.isNullOrEmpty() }) { "every level is described" }
expect(fields.getValue("e_goal").requiredWhen == "\${r_goal} = 1 or \${r_goal} = 5") { "${fields.getValue("e_goal")}" }
expect(fields.getValue("period").min == 1.0 && fields.getValue("period").max == 12.0) { "${fields.getValue("period")}" }
expect(fields.getValue("purpose").options.any { it.value == "routine" && it.label.isNotEmpty() }) { "options" }
expect(fields.getValue("time_on_learning").relevant != null) { "relevance as text" }
val snapshots = fields.getValue("snapshots")
expect(snapshots.kind == FieldKind.REPEAT && snapshots.subFields.map { it.id }.contains("snap_off_task")) { "$snapshots" }
expect(snapshots.subFields.first { it.id == "snap_off_task" }.constraint != null) { "sub-field constraint" }
val kinds = obs.sections.flatMap { s -> s.fields.flatMap { listOf(it) + it.subFields } }.map { it.kind }.toSet()
expect(kinds.size == 15) { "classroom observation has 15 field kinds, got $kinds" }
val en = store.template("classroom-observation", "en")
expect(en.title == "Lesson observation record") { en.title }
expect(en.scores.first { it.id == "total" }.bands.map { it.label }.contains("Excellent")) { "${en.scores}" }

// 3. She creates a lesson observation at a school.
val rec = store.createRecord("classroom-observation", "ouhai-033", inspector)
expect(rec.status() == RecordStatus.DRAFT) { "new record is a draft" }
expect(rec.templateId() == "classroom-observation") { rec.templateId() }

// 4. She fills every kind of field.
rec.setAnswer("lesson_date", AnswerValue.Date("2026-03-02"))
rec.setAnswer("purpose", AnswerValue.Choice("routine"))
rec.setAnswer("grade", AnswerValue.Choice("g8"))
rec.setAnswer("class_name", AnswerValue.Text("八(3)班"))
rec.setAnswer("subject", AnswerValue.Choice("math"))
rec.setAnswer("teacher_name", AnswerValue.Text("王老师"))
rec.setAnswer("topic", AnswerValue.Text("一次函数的图像"))
rec.setAnswer("lesson_type", AnswerValue.Choice("new"))
rec.clearAnswer("lesson_type")
// An input widget binds its field once and edits it with typed setters (no strings cross).
val period = rec.field("period")
expect(period.fieldId() == "period" && period.row() == null) { "bound field ${period.fieldId()}" }
period.setInteger(2)
period.setInteger(3)
rec.setAnswer("scheduled_start", AnswerValue.Time("08:50"))
rec.setAnswer("actual_start", AnswerValue.Time("08:52"))
rec.field("duration").setDuration(45)
rec.field("students_present").setInteger(42)
rec.setAnswer("licc_dimensions", AnswerValue.Choices(listOf("student_learning", "teacher_teaching")))

val row1 = rec.addRow("snapshots")
val row2 = rec.addRow("snapshots")
val row0 = rec.addRow("snapshots", 0u)
for ((i, row) in listOf(row0, row1, row2).withIndex()) {
    rec.setAnswer("snap_minute", AnswerValue.Integer(5L * (i + 1)), row)
    rec.setAnswer("snap_teacher_activity", AnswerValue.Choice("questioning"), row)
    rec.setAnswer("snap_most_learning", AnswerValue.Bool(i != 1), row)
}
rec.field("snap_off_task", row1).setInteger(2)
rec.setAnswer("snap_materials", AnswerValue.Choices(listOf("board", "worksheet")), row1)
rec.moveRow("snapshots", row0, 2u)
rec.removeRow("snapshots", row2)

val recall = rec.field("q_recall")
repeat(4) { recall.increment(1) }
rec.setAnswer("q_understanding", AnswerValue.Counter(3))
rec.increment("q_open", 2)
rec.increment("q_higher", 1)

val ratings = mapOf(
    "r_goal" to 5L, "r_content" to 4L, "r_method" to 4L, "r_feedback" to 4L,
    "r_participation" to 4L, "r_interest" to 4L, "r_thinking" to 4L, "r_outcome" to 4L,
    "r_bearing" to 4L, "r_language" to 4L, "r_board" to 4L, "r_it" to 4L,
)
for ((f, v) in ratings) rec.field(f).setRating(v)
rec.setAnswer("e_goal", AnswerValue.LongText("目标写在黑板上，并在小结时回扣。"))
rec.setAnswer("strengths", AnswerValue.LongText("问题链设计清晰。"))
rec.spliceText("problems", 0u, 0u, "小组汇报时间偏紧。")
rec.spliceText("problems", 0u, 2u, "全班")
rec.setAnswer("suggestions", AnswerValue.LongText("给学生留出思考时间。"))
rec.field("double_coded").setBool(false)
rec.sign("teacher_signature", signer = "王老师")

// 5. A bad value is refused with the field named, and the record is left as it was.
val tooLate = refused<ShidaoException.InvalidAnswer> { rec.setAnswer("period", AnswerValue.Integer(13)) }
expect(tooLate.field == "period" && tooLate.reason.contains("maximum")) { "${tooLate.field}: ${tooLate.reason}" }
val offTask = refused<ShidaoException.InvalidAnswer> { rec.setAnswer("snap_off_task", AnswerValue.Integer(99), row1) }
expect(offTask.field == "snap_off_task") { "constraint names the sub-field: ${offTask.field}" }
val badOption = refused<ShidaoException.InvalidAnswer> { rec.setAnswer("grade", AnswerValue.Choice("g12")) }
expect(badOption.field == "grade" && badOption.reason.contains("g12")) { badOption.reason }
val wrongKind = refused<ShidaoException.InvalidAnswer> { rec.setAnswer("period", AnswerValue.Text("three")) }
expect(wrongKind.field == "period") { wrongKind.reason }
val noRow = refused<ShidaoException.InvalidAnswer> { rec.setAnswer("snap_minute", AnswerValue.Integer(1)) }
expect(noRow.field == "snap_minute") { noRow.reason }
refused<ShidaoException.NotFound> { rec.removeRow("snapshots", "no-such-row") }
// The same checks through a bound field: the typed setter is the same edit.
val tooLateTyped = refused<ShidaoException.InvalidAnswer> { period.setInteger(13) }
expect(tooLateTyped.field == "period" && tooLateTyped.reason.contains("maximum")) { tooLateTyped.reason }
val wrongKindTyped = refused<ShidaoException.InvalidAnswer> { period.setBool(true) }
expect(wrongKindTyped.field == "period") { wrongKindTyped.reason }
val noRowTyped = refused<ShidaoException.InvalidAnswer> { rec.field("snap_minute").setInteger(1) }
expect(noRowTyped.field == "snap_minute") { noRowTyped.reason }
val noField = refused<ShidaoException.InvalidAnswer> { rec.field("no_such_field") }
expect(noField.field == "no_such_field") { noField.reason }
expect(rec.answer("period", "zh").answer == AnswerValue.Integer(3)) { "refused typed edits changed nothing" }

// 6. The form shows answers with their author, the validation report, computed values and scores.
val view = rec.read("en")
expect(view.validation.clean) { "validation: ${view.validation.issues}" }
val answers = view.answers.associateBy { it.field + (it.row?.let { r -> "@$r" } ?: "") }
expect(answers.getValue("period").answer == AnswerValue.Integer(3)) { "${answers["period"]}" }
expect(answers.getValue("period").by?.user == "insp-01" && answers.getValue("period").by?.device == "tablet-a") { "author" }
expect(!answers.containsKey("lesson_type")) { "cleared answer is gone" }
expect(answers.getValue("problems").answer == AnswerValue.LongText("全班汇报时间偏紧。")) { "${answers["problems"]}" }
expect(answers.getValue("q_recall").answer == AnswerValue.Counter(4)) { "${answers["q_recall"]}" }
expect(answers.getValue("teacher_signature").display == "王老师") { "${answers["teacher_signature"]}" }
expect(answers.getValue("r_goal").display?.startsWith("5 ") == true) { "rating shows its level label: ${answers["r_goal"]}" }
expect(view.rows.first { it.field == "snapshots" }.rows == listOf(row1, row0)) { "${view.rows}" }
val computed = view.computed.associateBy { it.field }
expect(computed.getValue("questions_total").number == 10.0) { "${computed["questions_total"]}" }
expect(computed.getValue("time_on_learning").number == 50.0) { "${computed["time_on_learning"]}" }
val total = view.scores.first { it.id == "total" }
// 优秀 95 on a weight of 10, 良好 85 on the other 90.
expect(total.value == 86.0 && total.outOf == 100.0 && total.band == "Good") { "$total" }
val zh = rec.read("zh").scores.first { it.id == "total" }
expect(zh.band == "良好") { "$zh" }
val history = rec.history("problems").mapNotNull { it.answer }
expect(history == listOf(AnswerValue.LongText("小组汇报时间偏紧。"), AnswerValue.LongText("全班汇报时间偏紧。"))) { "$history" }

// 7. An expert on another tablet takes a copy; both set the topic and tap a counter offline.
val dirB = Files.createTempDirectory("shidao-kt-b")
val storeB = ShidaoStore.open(dirB.resolve("shidao.db").toString())
val expert = Editor(user = "exp-07", device = "tablet-b", role = Role.EXPERT)
val id = storeB.mergeRecord(store.recordBytes(rec.id()), expert)
expect(id == rec.id()) { id }
val recB = storeB.openRecord(id, expert)
recB.setAnswer("topic", AnswerValue.Text("一次函数的图像与性质"))
recB.increment("q_recall", 1)
rec.setAnswer("topic", AnswerValue.Text("一次函数图像"))
rec.increment("q_recall", 1)

// 8. Her tablet merges the expert's copy: the listener fires, nobody's edit is lost.
seen.ids.clear()
store.mergeRecord(storeB.recordBytes(id), inspector)
expect(seen.ids.contains(id)) { "listener told about the merge: ${seen.ids}" }
rec.reload()
val topic = rec.answer("topic", "zh")
expect(topic.conflicts.size == 2) { "both topics kept: $topic" }
expect(topic.conflicts.mapNotNull { it.by?.user }.toSet() == setOf("insp-01", "exp-07")) { "$topic" }
expect(rec.answer("q_recall", "zh").answer == AnswerValue.Counter(6)) { "taps add up" }
rec.setAnswer("topic", AnswerValue.Text("一次函数的图像与性质"))
expect(rec.answer("topic", "zh").conflicts.isEmpty()) { "picking a value resolves the conflict" }

// 9. She submits; the record is listed as submitted and closed to her edits.
rec.submit()
expect(rec.status() == RecordStatus.SUBMITTED) { "${rec.status()}" }
val submitted = store.listRecords(RecordFilter(status = RecordStatus.SUBMITTED))
expect(submitted.map { it.id } == listOf(id)) { "$submitted" }
expect(store.listRecords(RecordFilter(school = "ouhai-033", template = "classroom-observation")).size == 1) { "by school and template" }
expect(store.listRecords(RecordFilter(school = "other-school")).isEmpty()) { "other school" }
expect(store.listRecords(RecordFilter()).first().date == "2026-03-02") { "summary carries the lesson date" }
refused<ShidaoException.NotAllowed> { rec.setAnswer("period", AnswerValue.Integer(4)) }

// 10. An inspection visit: a decimal and a photo.
val visit = store.createRecord("inspection-visit", "ouhai-033", inspector)
visit.setAnswer("modules_done", AnswerValue.Choices(listOf("site_walk", "spot_tests")))
visit.setAnswer("test_pass_rate", AnswerValue.Decimal(87.5))
val badRate = refused<ShidaoException.InvalidAnswer> { visit.setAnswer("test_pass_rate", AnswerValue.Decimal(120.0)) }
expect(badRate.field == "test_pass_rate") { badRate.reason }
val photo = byteArrayOf(0xFF.toByte(), 0xD8.toByte(), 1, 2, 3, 4)
val attached = visit.attachFile("walk_photo", photo, "image/jpeg", "classroom.jpg") as AnswerValue.Attachment
expect(attached.size == 6uL && attached.hash.length == 64) { "$attached" }
expect(store.attachment(attached.hash).bytes.contentEquals(photo)) { "file comes back" }
expect(visit.answer("walk_photo", "en").display == "classroom.jpg") { "${visit.answer("walk_photo", "en")}" }
expect(visit.answer("test_pass_rate", "en").answer == AnswerValue.Decimal(87.5)) { "decimal" }

// 11. Errors an app can act on; a Rust panic comes back as an error and the store goes on.
refused<ShidaoException.NotFound> { store.openRecord("no-such-record", inspector) }
refused<ShidaoException.NotFound> { store.template("no-such-template", "zh") }
refused<ShidaoException.InvalidAnswer> { store.createRecord("classroom-observation", "bad school id", inspector) }
val panic = refused<ShidaoException.Other> { store.debugPanic("kotlin test") }
expect(panic.reason.contains("internal error") && panic.reason.contains("kotlin test")) { panic.reason }
expect(store.countRecords() == 2uL) { "store still works after a panic" }

recB.close()
storeB.close()
visit.close()
rec.close()
store.close()

// 12. Sync. Wang's tablet enrols with the district's server using the one-time code the admin
//     gave him; the identity (and its token, which the app never sees) stays in the store.
val server = env("SHIDAO_TEST_SERVER")
val wangStore = ShidaoStore.open(dir.resolve("wang.db").toString())
expect(wangStore.enrolment() == null) { "a new store is not enrolled" }
val notEnrolled = refused<ShidaoException.Unauthorized> { runBlocking { wangStore.sync() } }
expect(notEnrolled.code == "not_enrolled") { "$notEnrolled" }
// The admin's QR code (from the relay's person page or `admin enrol-qr`) carries the server's
// address and the code; the bare code is not a QR payload.
val notQr = refused<ShidaoException.BadEnrolPayload> { runBlocking { wangStore.enrolFromQr(env("SHIDAO_TEST_CODE_WANG"), "王老师的平板") } }
expect(notQr.reason.contains("shidao://enrol")) { notQr.reason }
val wang = runBlocking { wangStore.enrolFromQr(env("SHIDAO_TEST_QR_WANG"), "王老师的平板") }
expect(wang.editor.user == "wang" && wang.editor.role == Role.INSPECTOR && wang.name == "王老师") { "$wang" }
expect(wang.editor.device.isNotEmpty() && wang.serverUrl == server && wang.deviceName == "王老师的平板") { "$wang" }
expect(wangStore.enrolment() == wang) { "the enrolment is kept: ${wangStore.enrolment()}" }
// A code works once.
refused<ShidaoException.EnrolCodeUsed> { runBlocking { ShidaoStore.openInMemory().enrolFromQr(env("SHIDAO_TEST_QR_WANG"), "第二台") } }

// 13. Li's tablet keeps its store encrypted at rest, with a 32-byte key from the Android Keystore
//     (here random). Bad server addresses give a clear Network error (and do not use up Li's code).
val liPath = dir.resolve("li.db").toString()
val liKey = ByteArray(32).also { java.security.SecureRandom().nextBytes(it) }
var liStore = ShidaoStore.openEncrypted(liPath, liKey)
expect(liStore.isEncrypted() && !wangStore.isEncrypted()) { "only Li's store is encrypted" }
val notUrl = refused<ShidaoException.Network> { runBlocking { liStore.enrol("shidao.example.cn", env("SHIDAO_TEST_CODE_LI"), "李老师的平板") } }
expect(notUrl.reason.contains("bad server address")) { notUrl.reason }
val nobody = refused<ShidaoException.Network> { runBlocking { liStore.enrol(env("SHIDAO_TEST_UNREACHABLE"), env("SHIDAO_TEST_CODE_LI"), "李老师的平板") } }
expect(nobody.reason.contains("cannot reach the server")) { nobody.reason }
refused<ShidaoException.Network> { wangStore.setServerUrl("ftp://shidao.example.cn") }

// 14. Wang observes a lesson and photographs the site walk, then syncs: progress after each
//     round, the photo uploaded first.
val lesson = wangStore.createRecord("classroom-observation", "ouhai-a", wang.editor)
lesson.setAnswer("topic", AnswerValue.Text("勾股定理"))
lesson.setAnswer("class_name", AnswerValue.Text("八(2)班"))
val walk = wangStore.createRecord("inspection-visit", "ouhai-a", wang.editor)
val photoHash = (walk.attachFile("walk_photo", photo, "image/jpeg", "walk.jpg") as AnswerValue.Attachment).hash
val steps = Steps()
val first = runBlocking { wangStore.sync(steps) }
expect(first.pushed == 2uL && first.pulled == 0uL && first.uploaded == 1uL && first.refused.isEmpty()) { "$first" }
val lastStep = steps.steps.last()
expect(lastStep.done && lastStep.pushed == 2uL && lastStep.bytesSent > 0uL && steps.steps.size.toUInt() == first.rounds) { "${steps.steps}" }

// 15. Li enrols her tablet and syncs: both records arrive and her listener is told; the photo
//     comes from the server when she opens it.
val liSeen = Seen()
liStore.setChangeListener(liSeen)
val liForms = FormsHeard()
liStore.setFormsListener(liForms)
val li = runBlocking { liStore.enrolFromQr(env("SHIDAO_TEST_QR_LI"), "李老师的平板") }
val got = runBlocking { liStore.sync() }
// The sync brought what Li picks from lists: her school, the district's task, the indicator bank.
val picks = liStore.referenceData() ?: error("no reference data after a sync")
expect(picks.schools.map { it.id to it.name } == listOf("ouhai-a" to "瓯海区实验中学")) { "${picks.schools}" }
expect(picks.tasks.map { it.title } == listOf("新增优质学位") && picks.tasks[0].school == null) { "${picks.tasks}" }
expect(picks.indicators.map { Triple(it.name, it.unit, it.target) } == listOf(Triple("骨干教师占比", "%", 25.0))) { "${picks.indicators}" }
val both = listOf(lesson.id(), walk.id()).sorted()
expect(got.pulled == 2uL && got.changed == both) { "$got" }
expect(liSeen.ids.sorted() == both) { "Li's listener: ${liSeen.ids}" }
refused<ShidaoException.NotFound> { liStore.attachment(photoHash) }
expect(runBlocking { liStore.fetchAttachment(photoHash) }.bytes.contentEquals(photo)) { "photo fetched" }
expect(liStore.attachment(photoHash).mime == "image/jpeg") { "and kept" }

// 16. Offline, Li names the teacher and both change the class; Li syncs, then Wang: Li's edit
//     is merged on Wang's tablet, his listener is told, and the class keeps both values with
//     their authors.
val lessonLi = liStore.openRecord(lesson.id(), li.editor)
lessonLi.setAnswer("teacher_name", AnswerValue.Text("陈老师"))
lessonLi.setAnswer("class_name", AnswerValue.Text("八(3)班"))
lesson.setAnswer("class_name", AnswerValue.Text("八(2)班（实验）"))
expect(runBlocking { liStore.sync() }.pushed == 1uL) { "Li's edit is on the server" }
val wangSeen = Seen()
wangStore.setChangeListener(wangSeen)
val merged = runBlocking { wangStore.sync() }
expect(merged.pushed == 1uL && merged.pulled == 1uL && merged.changed == listOf(lesson.id())) { "$merged" }
expect(wangSeen.ids == listOf(lesson.id())) { "Wang's listener: ${wangSeen.ids}" }
lesson.reload()
val teacher = lesson.answer("teacher_name", "zh")
expect(teacher.answer == AnswerValue.Text("陈老师") && teacher.by?.user == "li") { "$teacher" }
val className = lesson.answer("class_name", "zh")
expect(className.conflicts.mapNotNull { it.by?.user }.toSet() == setOf("wang", "li")) { "both kept: $className" }

// 16b. A note beside an approval. Wang fills and submits a lesson record; Li holds its draft
//      copy; the supervisor approves it on the relay; Li's note, made offline on her draft, is
//      refused (`sealed`) and set aside: her tablet shows the approved record without it, lists
//      the note with the reason, and can show the refused copy; nothing stays refused.
fun fillLesson(r: FormRecord) {
    val plain = listOf(
        "lesson_date" to AnswerValue.Date("2026-03-02"), "purpose" to AnswerValue.Choice("routine"),
        "grade" to AnswerValue.Choice("g8"), "class_name" to AnswerValue.Text("八(1)班"),
        "subject" to AnswerValue.Choice("math"), "teacher_name" to AnswerValue.Text("赵老师"),
        "topic" to AnswerValue.Text("一元一次方程"), "period" to AnswerValue.Integer(1L),
        "scheduled_start" to AnswerValue.Time("08:00"), "duration" to AnswerValue.Duration(40L),
        "students_present" to AnswerValue.Integer(40L), "licc_dimensions" to AnswerValue.Choices(listOf("culture")),
        "strengths" to AnswerValue.LongText("导入自然。"), "problems" to AnswerValue.LongText("练习偏少。"),
        "suggestions" to AnswerValue.LongText("增加练习。"), "double_coded" to AnswerValue.Bool(false),
    )
    for ((f, v) in plain) r.setAnswer(f, v)
    val snap = r.addRow("snapshots")
    r.setAnswer("snap_minute", AnswerValue.Integer(5L), snap)
    r.setAnswer("snap_teacher_activity", AnswerValue.Choice("lecture"), snap)
    r.setAnswer("snap_most_learning", AnswerValue.Bool(true), snap)
    r.setAnswer("snap_off_task", AnswerValue.Integer(1L), snap)
    r.increment("q_recall", 2L)
    r.increment("q_open", 1L)
    for (f in listOf("r_goal", "r_content", "r_method", "r_feedback", "r_participation", "r_interest", "r_thinking", "r_outcome",
            "r_bearing", "r_language", "r_board", "r_it")) {
        r.setAnswer(f, AnswerValue.Rating(3L))
    }
    r.sign("teacher_signature", signer = "赵老师")
}
val graded = wangStore.createRecord("classroom-observation", "ouhai-a", wang.editor)
fillLesson(graded)
expect(graded.read("zh").validation.clean) { "${graded.read("zh").validation.issues}" }
expect(runBlocking { wangStore.sync() }.refused.isEmpty()) { "Wang's lesson is on the server" }
runBlocking { liStore.sync() }
val gradedLi = liStore.openRecord(graded.id(), li.editor)
graded.submit()
expect(runBlocking { wangStore.sync() }.refused.isEmpty()) { "the submit is on the server" }
java.net.URI("${env("SHIDAO_TEST_CONTROL")}/approve/${graded.id()}").toURL().readText()
val late = AnswerValue.LongText("李：课后补充一条建议。")
gradedLi.setAnswer("suggestions", late)
val report = runBlocking { liStore.sync() }
expect(report.refused.map { it.record to it.code } == listOf(graded.id() to "sealed")) { "${report.refused}" }
expect(report.setAside.size == 1) { "${report.setAside}" }
val entry = report.setAside.first()
expect(entry.record == graded.id() && entry.code == "sealed" && entry.fields == listOf("suggestions")) { "$entry" }
expect(entry.keptAside == listOf("suggestions") && entry.reapplied.isEmpty()) { "$entry" }
expect(liStore.setAside(graded.id()) == listOf(entry) && liStore.setAside() == listOf(entry)) { "listed" }
gradedLi.reload()
expect(gradedLi.status() == RecordStatus.APPROVED) { "the approval stands on Li's tablet" }
expect(gradedLi.answer("suggestions", "zh").answer != late) { "the note is not shown as part of the record" }
val aside = liStore.setAsideRecord(entry.id, li.editor, "zh")
expect(aside.answers.first { it.field == "suggestions" }.answer == late) { "the refused copy keeps the note" }
val again = runBlocking { liStore.sync() }
expect(again.refused.isEmpty() && again.setAside.isEmpty()) { "$again" }
println("set aside: ${entry.record} ${entry.fields} (${entry.code}: ${entry.reason})")

// 16b. The programme's own 听课评价表 (an XLSForm its admin published on the relay) came with
//      the first syncs: both tablets offer it beside the built-in forms and Li's forms listener
//      heard of it. Wang fills one; Li receives it and reads the form's own total.
val formId = env("SHIDAO_TEST_FORM")
expect(first.formsChanged && got.formsChanged && liForms.told >= 1) { "$first / $got / ${liForms.told}" }
for (tablet in listOf(wangStore, liStore)) {
    val offered = tablet.templates("zh").map { it.id }
    expect(formId in offered && offered.size == 7) { "$offered" }
}
expect(liStore.templates("zh").first { it.id == formId }.title == "听课评价表") { "the form's Chinese title" }
val tk = wangStore.createRecord(formId, "ouhai-a", wang.editor)
tk.setAnswer("lesson_date", AnswerValue.Date("2026-11-24"))
tk.setAnswer("teacher", AnswerValue.Text("赵老师"))
tk.setAnswer("subject", AnswerValue.Choice("math"))
for (f in listOf("r_goal", "r_content", "r_method", "r_student", "r_effect")) {
    tk.setAnswer(f, AnswerValue.Rating(4L))
}
expect(runBlocking { wangStore.sync() }.refused.isEmpty()) { "Wang's 听课评价表 accepted" }
expect(runBlocking { liStore.sync() }.changed == listOf(tk.id())) { "Li receives it" }
val tkTotal = liStore.openRecord(tk.id(), li.editor).read("zh").computed.first { it.field == "total" }
expect(tkTotal.number == 80.0) { "$tkTotal" }

// 17. A sync waiting on a server that never answers stops at once when cancelled.
wangStore.setServerUrl(env("SHIDAO_TEST_HANG"))
val cancel = SyncCancel()
val outcome = runBlocking {
    val running = async(Dispatchers.IO) { runCatching { wangStore.sync(cancel = cancel) } }
    delay(500)
    expect(running.isActive) { "the sync waits on the silent server" }
    val asked = System.nanoTime()
    cancel.cancel()
    val result = withTimeout(5_000) { running.await() }
    println("cancel took effect in ${(System.nanoTime() - asked) / 1_000_000} ms")
    result
}
expect(outcome.exceptionOrNull() is ShidaoException.Cancelled) { "$outcome" }
expect(cancel.isCancelled()) { "stays cancelled" }
wangStore.setServerUrl(server)

// 18. Li's app restarts: a wrong key (or one that is not 32 bytes) is refused and changes
//     nothing; the right key opens the store with its enrolment, records and photo, and it syncs.
//     Nothing Li's tablet holds is readable in its files.
val liCount = liStore.countRecords()
liStore.close()
val wrongKey = refused<ShidaoException.WrongKey> { ShidaoStore.openEncrypted(liPath, ByteArray(32) { 7 }) }
expect(wrongKey.reason.contains("does not open with this key")) { wrongKey.reason }
refused<ShidaoException.WrongKey> { ShidaoStore.openEncrypted(liPath, ByteArray(16)) }
liStore = ShidaoStore.openEncrypted(liPath, liKey)
expect(liStore.isEncrypted() && liStore.enrolment() == li && liStore.countRecords() == liCount) { "Li's store after reopening" }
expect(liStore.attachment(photoHash).bytes.contentEquals(photo)) { "the photo is kept, encrypted" }
expect(runBlocking { liStore.sync() }.refused.isEmpty()) { "the reopened store syncs" }
fun holds(haystack: ByteArray, needle: ByteArray) =
    (0..haystack.size - needle.size).any { i -> needle.indices.all { haystack[i + it] == needle[it] } }
for (f in java.io.File(dir.toString()).listFiles()!!.filter { it.name.startsWith("li.db") }) {
    val bytes = f.readBytes()
    for (marker in listOf("勾股定理", "陈老师", "wang")) {
        expect(!holds(bytes, marker.toByteArray())) { "${f.name} shows \"$marker\" without the key" }
    }
}

// 19. Li's tablet is revoked by the admin: her next sync is refused with the reason; Wang's
//     goes on.
java.net.URI("${env("SHIDAO_TEST_CONTROL")}/revoke/${li.editor.device}").toURL().readText()
val revoked = refused<ShidaoException.Unauthorized> { runBlocking { liStore.sync() } }
expect(revoked.code == "revoked" && revoked.reason.contains("revoked")) { "$revoked" }
expect(runBlocking { wangStore.sync() }.refused.isEmpty()) { "Wang still syncs" }

gradedLi.close()
graded.close()
lessonLi.close()
lesson.close()
walk.close()
liStore.close()
wangStore.close()
println("kotlin app flow: ok")
