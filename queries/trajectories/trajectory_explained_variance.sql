-- name: trajectory_explained_variance
-- description: Explained variance of each component of each trajectory fit, with the cumulative ratio (ready for export latex).
SELECT c.fit, f.method AS fit_method, c.component, c.method, c.explained_variance, c.explained_variance_ratio,
    sum(c.explained_variance_ratio) OVER (PARTITION BY c.fit ORDER BY c.component) AS cumulative_ratio,
    c.sparsity
FROM trajectory_components AS c
JOIN trajectory_fits AS f USING (fit)
ORDER BY c.fit, c.component
