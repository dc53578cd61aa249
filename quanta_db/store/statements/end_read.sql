-- Closes the result a read left open (and so its transaction), touching nothing.
SELECT 1
