//! Dependency order: services grouped in waves, where every service's dependencies are in
//! earlier waves, so `up` can start a whole wave at once and wait for it before the next.

use std::collections::{BTreeMap, BTreeSet};

/// The dependency graph: service → services it depends on.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// Groups `graph`'s services into start waves (each wave sorted by name), or returns a cycle as
/// the path `a → b → … → a` when there is one. Dependencies on names outside the graph are
/// ignored (validation reports them separately).
pub fn waves(graph: &Graph) -> Result<Vec<Vec<String>>, Vec<String>> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut remaining: BTreeSet<&str> = graph.keys().map(String::as_str).collect();
    let mut waves = Vec::new();
    while !remaining.is_empty() {
        let wave: Vec<&str> = remaining
            .iter()
            .copied()
            .filter(|name| {
                graph[*name]
                    .iter()
                    .all(|dep| done.contains(dep.as_str()) || !graph.contains_key(dep))
            })
            .collect();
        if wave.is_empty() {
            return Err(find_cycle(graph, &remaining));
        }
        for name in &wave {
            remaining.remove(name);
            done.insert(name);
        }
        waves.push(wave.iter().map(|s| s.to_string()).collect());
    }
    Ok(waves)
}

/// Every node in `stuck` has a dependency inside `stuck`, so walking dependencies from the
/// smallest name must revisit a node; the walk from that node on is a cycle.
fn find_cycle(graph: &Graph, stuck: &BTreeSet<&str>) -> Vec<String> {
    let Some(start) = stuck.first() else {
        return Vec::new();
    };
    let mut path: Vec<&str> = vec![start];
    loop {
        let current = path[path.len() - 1];
        let Some(next) = graph[current].iter().find(|d| stuck.contains(d.as_str())) else {
            // Unreachable for a real stuck set; return the walk so far rather than panic.
            return path.iter().map(|s| s.to_string()).collect();
        };
        if let Some(at) = path.iter().position(|p| *p == next) {
            let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(next.clone());
            return cycle;
        }
        path.push(next);
    }
}

/// `selected` plus everything they depend on, transitively.
pub fn with_dependencies(graph: &Graph, selected: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<&str> = selected.iter().map(String::as_str).collect();
    while let Some(name) = todo.pop() {
        if out.insert(name.to_string())
            && let Some(deps) = graph.get(name)
        {
            todo.extend(deps.iter().map(String::as_str));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> Graph {
        edges
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    /// Independent services share a wave; dependants come strictly after their dependencies.
    #[test]
    fn groups_into_waves() {
        let g = graph(&[
            ("gateway", &["registry", "idp"]),
            ("registry", &[]),
            ("idp", &[]),
            ("orders", &["registry", "db", "kafka"]),
            ("db", &[]),
            ("kafka", &[]),
            ("notify", &["orders"]),
        ]);
        let w = waves(&g).unwrap();
        assert_eq!(
            w,
            vec![
                vec!["db", "idp", "kafka", "registry"],
                vec!["gateway", "orders"],
                vec!["notify"],
            ]
        );
    }

    /// A cycle is reported as a closed path starting from the smallest name in it.
    #[test]
    fn reports_the_cycle() {
        let g = graph(&[
            ("a", &["b"]),
            ("b", &["c"]),
            ("c", &["a"]),
            ("d", &[]),
            ("e", &["a"]),
        ]);
        assert_eq!(waves(&g).unwrap_err(), vec!["a", "b", "c", "a"]);
    }

    /// A service depending on itself is the shortest cycle.
    #[test]
    fn self_cycle() {
        let g = graph(&[("a", &["a"])]);
        assert_eq!(waves(&g).unwrap_err(), vec!["a", "a"]);
    }

    /// Selecting a service pulls in its dependencies transitively, and nothing else.
    #[test]
    fn closure_of_a_selection() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &[]), ("d", &[])]);
        let got = with_dependencies(&g, &["a".to_string()]);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    }
}
