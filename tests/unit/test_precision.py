"""bf16 autocast only where the CPU does bf16 in hardware (emulated bf16 made training 100x slower)."""

from padrec.training.precision import native_bf16, use_bf16

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
ZEN4 = "flags\t\t: avx2 avx512f avx512_bf16\n"


def test_native_bf16_reads_the_cpu_flags():
    assert not native_bf16(AVX2_ONLY)
    assert native_bf16(SAPPHIRE_RAPIDS) and native_bf16(ZEN4)
    # a flag named in another line (the model name, say) does not count
    assert not native_bf16("model name\t: avx512_bf16 capable\nflags\t\t: avx2\n")


def test_an_explicit_setting_wins_over_the_hardware():
    assert use_bf16(True) is True and use_bf16(False) is False
    assert use_bf16(None) == native_bf16()
