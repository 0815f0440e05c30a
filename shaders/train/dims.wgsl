// Shared by the training kernels (prepended to each): the dispatch's shape, and the flat index
// of an invocation. Dispatches spread over x and y when x alone would exceed the device limit.
struct Dims {
    // candidates trained side by side
    p: u32,
    // rows (examples) per candidate
    rows: u32,
    // features in and out of the layer (gather: input length and target width)
    a: u32,
    b: u32,
    // floats between two candidates' inputs; 0 when they share them (the data batch)
    in_stride: u32,
    // where the layer's parameters start within one candidate's vector
    offset: u32,
    // parameters per candidate
    n_params: u32,
    // activation kind (1 relu, 2 tanh, 3 sigmoid)
    kind: u32,
}

fn flat(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 64u;
}
