//! GEMM wrapper (filled by the engine).
