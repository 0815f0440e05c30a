// Entry (k, n) of a convolution's input columns X (never stored): k = (ci, ky, kx) a tap of the
// window, n = (r, pix) an output pixel of example r; zero where the window leaves the image.
fn im2col(cand: u32, k: u32, n: u32) -> f32 {
    let taps = d.kh * d.kw;
    let plane = d.oh * d.ow;
    let r = n / plane;
    let pix = n % plane;
    let ci = k / taps;
    let iy = i32((pix / d.ow) * d.stride + (k % taps) / d.kw) - i32(d.pad);
    let ix = i32((pix % d.ow) * d.stride + k % d.kw) - i32(d.pad);
    if (iy < 0 || iy >= i32(d.h) || ix < 0 || ix >= i32(d.w)) {
        return 0.0;
    }
    return input[cand * d.in_stride + r * d.a + (ci * d.h + u32(iy)) * d.w + u32(ix)];
}
