# Thin row-major GEMM over scipy's BLAS (``scipy.linalg.cython_blas``), callable
# without the GIL. One fused-type entry point picks sgemm/dgemm at compile time
# (``if floating is float``), as scikit-learn's ``_cython_blas`` does.
#
# BLAS is column-major. A row-major M x N matrix with row stride ld is, read
# column-major, its transpose with leading dimension ld; so the row-major
# product C = op(A) @ op(B) is computed as the column-major C^T = op(B)^T op(A)^T,
# i.e. by calling gemm with the operands (and their trans flags) swapped.
#
# Callers pass row strides (``lda`` = elements between consecutive rows of the
# matrix as stored), so any row-contiguous sub-block of a larger array can be
# an operand without a copy. Other precisions (cgemm/zgemm for FFT channel
# contractions) can be added here the same way.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef enum Trans:
    NoTrans = 110  # 'n'
    TransT = 116   # 't'


cdef inline void gemm_rm(Trans ta, Trans tb, int m, int n, int k,
                         floating alpha, const floating* a, int lda,
                         const floating* b, int ldb, floating beta,
                         floating* c, int ldc) noexcept nogil:
    """Row-major C (m x n) = alpha * op(A) @ op(B) + beta * C.

    op(A) is m x k and op(B) is k x n. A is stored m x k (ta == NoTrans) or
    k x m (ta == TransT) with row stride lda; likewise B and ldb; C has row
    stride ldc. Zero-sized products (m or n == 0) do nothing; k == 0 scales C
    by beta, as BLAS defines it.
    """
    cdef char cta = <char>ta
    cdef char ctb = <char>tb
    if m <= 0 or n <= 0:
        return
    # BLAS checks ld >= max(1, rows of the column-major view); a degenerate
    # k == 0 or single-row operand may carry a smaller stride than that.
    if lda < 1:
        lda = 1
    if ldb < 1:
        ldb = 1
    if floating is float:
        sgemm(&ctb, &cta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&ctb, &cta, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda,
              &beta, c, &ldc)
