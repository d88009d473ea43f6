// The Kotlin half of the edit-cost measurement (run by bindings/bench/edit_cost.sh): the same
// edits as edit_cost.rs, made through the generated Kotlin bindings (JNA), each call timed alone.
// Also times `FormRecord.id()`, a call that does no work in Rust: the bare cost of one crossing.

import uniffi.shidao.*
import java.nio.file.Files

val warmup = 3
val rounds = 10
val edits = 1000

fun summary(ns: LongArray): String {
    ns.sort()
    fun pick(q: Double) = ns[((ns.size - 1) * q).toInt()] / 1000.0
    val mean = ns.average() / 1000.0
    return "median %7.1f µs  p99 %7.1f µs  mean %7.1f µs".format(pick(0.5), pick(0.99), mean)
}

val dir = Files.createTempDirectory("shidao-edit-cost")
val store = ShidaoStore.openWith(dir.resolve("kotlin.db").toString(), Durability.NORMAL)
val editor = Editor(user = "insp-01", device = "bench", role = Role.INSPECTOR)
val editNs = LongArray(rounds * edits)
val idNs = LongArray(rounds * edits)
var n = 0
for (round in 0 until warmup + rounds) {
    val record = store.createRecord("classroom-observation", "ouhai-033", editor)
    for (i in 0 until edits) {
        val value = (i % 12).toLong() + 1
        val t0 = System.nanoTime()
        record.setAnswer("period", AnswerValue.Integer(value))
        val t1 = System.nanoTime()
        record.id()
        val t2 = System.nanoTime()
        if (round >= warmup) {
            editNs[n] = t1 - t0
            idNs[n] = t2 - t1
            n++
        }
    }
    record.close()
}
store.close()
println("kotlin bindings set_answer: " + summary(editNs))
println("kotlin bindings id() (no work): " + summary(idNs))
