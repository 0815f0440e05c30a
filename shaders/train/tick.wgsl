// Advances the step counter: the next step's kernels read it, so a whole training run is
// recorded into one command buffer.
@group(0) @binding(0) var<storage, read_write> counter: array<u32>;

@compute @workgroup_size(1)
fn main() {
    counter[0] = counter[0] + 1u;
}
