# The geometry of one prepared problem, shared by the direct and im2col kernels.
# Arrays are 5-D C-contiguous (N, C, D, H, W), the input unpadded: both kernels pad
# inside, so their entry points set pd, ph, pw from the padding (zeros before each
# spatial axis; those after follow from the output size). make_geom leaves them 0.
cdef struct Geom:
    Py_ssize_t N, C, D, H, W           # input, unpadded
    Py_ssize_t pd, ph, pw              # zero padding before each axis, done by the kernel
    Py_ssize_t CO, CIG, COG, G         # channels: out, in per group, out per group, groups
    Py_ssize_t KD, KH, KW, K           # kernel, K = taps per channel
    Py_ssize_t OD, OH, OW, L, R        # output; L = OD*OH*OW, R = OD*OH rows
    Py_ssize_t sd, sh, sw, dd, dh, dw  # stride, dilation
    bint pointwise                     # 1x1x1 kernel, stride 1 (no unfold needed
                                       # when there is no padding either)


cdef inline Geom make_geom(const Py_ssize_t* xs, const Py_ssize_t* ws, const Py_ssize_t* ys,
                           tuple stride, tuple dilation, int groups):
    """From the shapes of the input (xs), weight (ws) and output (ys) memoryviews."""
    cdef Geom g
    g.N, g.C, g.D, g.H, g.W = xs[0], xs[1], xs[2], xs[3], xs[4]
    g.CO, g.CIG, g.KD, g.KH, g.KW = ws[0], ws[1], ws[2], ws[3], ws[4]
    g.OD, g.OH, g.OW = ys[2], ys[3], ys[4]
    g.sd, g.sh, g.sw = stride
    g.dd, g.dh, g.dw = dilation
    g.pd = g.ph = g.pw = 0
    g.G = groups
    g.COG = g.CO // groups
    g.K = g.KD * g.KH * g.KW
    g.L = g.OD * g.OH * g.OW
    g.R = g.OD * g.OH
    g.pointwise = (g.K == 1 and g.sd == 1 and g.sh == 1 and g.sw == 1)
    return g
