"""Boolean token filters: present trigram and the induction (repeated bigram) mask."""
