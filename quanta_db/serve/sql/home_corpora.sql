-- Home page: the corpora in the store.
SELECT corpus, tokenizer, n_docs, n_tokens FROM corpora ORDER BY corpus
