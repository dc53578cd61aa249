SELECT value FROM store_info WHERE key = 'root'
