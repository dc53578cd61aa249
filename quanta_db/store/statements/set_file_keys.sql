UPDATE files SET keys = ? WHERE path = ?
