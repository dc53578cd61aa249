SELECT current_setting('allow_unsigned_extensions')
