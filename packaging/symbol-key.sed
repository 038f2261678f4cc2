# Reduces a linker symbol name to a key that survives rebuilds: Rust's legacy hash suffix
# (17h<16 hex>E), the v0 crate disambiguators (Cs<base62>_) and the suffixes that tell local
# functions of the same name apart (.llvm.<digits>, .<digits>) change with features, targets and
# toolchains; the rest of the name does not. Used by cc-hot-first and hot-functions.sh, so both
# sides of the match agree.
s/17h[0-9a-f]\{16\}E/E/g
s/Cs[0-9A-Za-z]\{1,\}_/Cs_/g
s/\.llvm\.[0-9]\{1,\}$//
s/\.[0-9]\{1,\}$//
# glibc's string functions come in one variant per instruction set (__memcpy_avx_unaligned_erms,
# __strlen_evex, __strchr_sse2, ...), of which the start-up code picks one for the processor; the
# profile's processor may not be the one that runs pipit, so every variant shares its name's key.
/^__[a-z]/s/_\(sse2\|ssse3\|sse4_1\|sse4_2\|sse42\|avx\|avx2\|avx512\|evex\|evex512\)\(_.*\)\{0,1\}$//
