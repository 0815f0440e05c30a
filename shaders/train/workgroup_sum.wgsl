// Sums over a workgroup of GROUP invocations, in a fixed order (so results do not depend on
// scheduling); called by every invocation, in uniform control flow.
const GROUP: u32 = 256u;

var<workgroup> sums: array<f32, GROUP>;

fn workgroup_sum(me: u32, v: f32) -> f32 {
    sums[me] = v;
    workgroupBarrier();
    for (var half = GROUP / 2u; half > 0u; half /= 2u) {
        if (me < half) {
            sums[me] += sums[me + half];
        }
        workgroupBarrier();
    }
    let total = sums[0];
    workgroupBarrier();
    return total;
}
