-- uses: clock
-- Redis's clock as the scripts see it, so admin listings agree with verify_key. No keys, no
-- arguments.
-- Reply: epoch seconds as a string ('%.6f'): a Lua number reaches the caller truncated to an
-- integer.
return string.format('%.6f', now_seconds())
