pg_catalog.format('cluster "%s" (schema "%s")',
    pg_catalog.replace(CASE WHEN @ARG@ LIKE '\_%' AND pg_catalog.length(@ARG@) > 1
                            THEN pg_catalog.substr(@ARG@, 2) ELSE @ARG@ END, '"', '""'),
    pg_catalog.replace(@ARG@, '"', '""'))
