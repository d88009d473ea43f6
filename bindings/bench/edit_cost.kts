// The Kotlin half of the edit-cost measurement (run by bindings/bench/edit_cost.sh against a
// library built with the `bench` feature). Each round, on fresh lesson observations:
//   1. EDITS calls of `setAnswer("period", Integer(1..12))` from Kotlin, each timed alone;
//   2. EDITS calls of `field("period").setInteger(1..12)` (a `FieldEditor` bound once, as an
//      input widget holds it): the same edit with no string or enum to convert;
//   3. the same EDITS edits made in Rust by `benchSetIntegerInRust` (the same `set_answer` the
//      binding calls, without the crossing), each timed alone in Rust;
//   4. EDITS calls of `id()`, which does no work in Rust: the bare cost of a crossing and back.
// Interleaving them in one process puts them under the same load, so their difference is the
// cost of the binding even on a busy machine. CPU time of the calling thread per round is
// reported too (it leaves out time spent waiting for a core). The last line is key=value.

import uniffi.shidao.*
import java.lang.management.ManagementFactory
import java.nio.file.Files

val warmup = 5
val rounds = 20
val edits = 500
val threads = ManagementFactory.getThreadMXBean()

class Series {
    val ns = LongArray(rounds * edits)
    val cpu = LongArray(rounds)
    fun median(): Double = ns.sortedArray()[ns.size / 2] / 1000.0
    fun line(): String {
        val s = ns.sortedArray()
        fun pick(q: Double) = s[((s.size - 1) * q).toInt()] / 1000.0
        val cpuPerCall = cpu.sortedArray()[cpu.size / 2].toDouble() / edits / 1000.0
        return "wall median %7.1f µs  p90 %7.1f µs  mean %7.1f µs | thread CPU %6.1f µs/call".format(pick(0.5), pick(0.9), s.average() / 1000.0, cpuPerCall)
    }
}

val dir = Files.createTempDirectory("shidao-edit-cost")
val store = ShidaoStore.openWith(dir.resolve("kotlin.db").toString(), Durability.NORMAL)
val editor = Editor(user = "insp-01", device = "bench", role = Role.INSPECTOR)
val kotlin = Series()
val typed = Series()
val rust = Series()
val bare = Series()
for (round in 0 until warmup + rounds) {
    val counted = round >= warmup
    val at = (round - warmup) * edits

    val a = store.createRecord("classroom-observation", "ouhai-033", editor)
    var cpu = threads.currentThreadCpuTime
    for (i in 0 until edits) {
        val answer = AnswerValue.Integer((i % 12).toLong() + 1)
        val t0 = System.nanoTime()
        a.setAnswer("period", answer)
        val t1 = System.nanoTime()
        if (counted) kotlin.ns[at + i] = t1 - t0
    }
    if (counted) kotlin.cpu[round - warmup] = threads.currentThreadCpuTime - cpu

    val c = store.createRecord("classroom-observation", "ouhai-033", editor)
    val period = c.field("period")
    cpu = threads.currentThreadCpuTime
    for (i in 0 until edits) {
        val value = (i % 12).toLong() + 1
        val t0 = System.nanoTime()
        period.setInteger(value)
        val t1 = System.nanoTime()
        if (counted) typed.ns[at + i] = t1 - t0
    }
    if (counted) typed.cpu[round - warmup] = threads.currentThreadCpuTime - cpu
    period.close()
    c.close()

    val b = store.createRecord("classroom-observation", "ouhai-033", editor)
    cpu = threads.currentThreadCpuTime
    val inRust = b.benchSetIntegerInRust("period", edits.toUInt())
    if (counted) {
        rust.cpu[round - warmup] = threads.currentThreadCpuTime - cpu
        for (i in 0 until edits) rust.ns[at + i] = inRust[i].toLong()
    }

    cpu = threads.currentThreadCpuTime
    for (i in 0 until edits) {
        val t0 = System.nanoTime()
        a.id()
        val t1 = System.nanoTime()
        if (counted) bare.ns[at + i] = t1 - t0
    }
    if (counted) bare.cpu[round - warmup] = threads.currentThreadCpuTime - cpu
    a.close()
    b.close()
}
store.close()
println("${rounds * edits} calls each ($rounds rounds of $edits after $warmup warm-up rounds), interleaved in one JVM:")
println("kotlin  setAnswer            " + kotlin.line())
println("kotlin  FieldEditor.setInteger " + typed.line())
println("rust    set_answer (no FFI)  " + rust.line())
println("kotlin  id() (no work)       " + bare.line())
println("overhead per call: setAnswer %.1f µs, FieldEditor.setInteger %.1f µs (median Kotlin - median Rust)".format(kotlin.median() - rust.median(), typed.median() - rust.median()))
println("set_answer_us=%.1f field_editor_us=%.1f rust_us=%.1f overhead_set_answer_us=%.1f overhead_field_editor_us=%.1f".format(
    kotlin.median(), typed.median(), rust.median(), kotlin.median() - rust.median(), typed.median() - rust.median()))
