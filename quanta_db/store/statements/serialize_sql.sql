SELECT json_serialize_sql(?)
