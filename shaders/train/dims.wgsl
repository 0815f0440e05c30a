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
    // activation kind (1 relu, 2 tanh, 3 sigmoid); pooling: 0 max, 1 average; forward-mode
    // derivatives: 1 when the input is data (it has no tangent)
    kind: u32,
    // convolution, pooling and batch norm: the input's channels, height and width; output
    // channels; the kernel's (or window's) height and width; stride and zero padding; the
    // output's height and width; 1 when a convolution has biases; batch norm: where its running
    // statistics start in a candidate's state, and state floats per candidate; dropout: its
    // rate (f32 bits), its slot among the model's dropout layers, and their number
    c: u32,
    h: u32,
    w: u32,
    c_out: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    oh: u32,
    ow: u32,
    bias: u32,
    state_offset: u32,
    n_state: u32,
    rate: u32,
    slot: u32,
    slots: u32,
    // a convolution's weight gradient: the length of each chunk of its split sum, their number
    chunk: u32,
    splits: u32,
    // gather: the split's inputs are byte codes, after each feature's 256 values
    coded: u32,
    unused: u32,
}

fn flat(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 64u;
}
