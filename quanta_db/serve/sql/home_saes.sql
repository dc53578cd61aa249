-- Home page: the registered SAEs.
SELECT sae, model, step, hook_name, d_sae, architecture FROM saes ORDER BY sae
