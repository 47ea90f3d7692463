//! `hearthnet doctor`: run the checks, print ✓/✗ with a `fix:` under each
//! failure (or JSON). Exit 0 all pass, 1 any fail, 2 doctor itself broke.

use std::path::Path;

use anyhow::anyhow;
use hearthnet_client::ClientError;
use hearthnet_config::Env;
use hearthnet_observability::doctor::{
    self, COLD_CHECKS, Check, CheckResult, DoctorContext, NodeSnapshot, RUNNING_CHECKS,
};

use hearthnet_node::SERVICE_CHECKS;

use crate::cli::DoctorArgs;
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer::{DIM, FAIL, FIX, PASS};

pub fn run(config: Option<&Path>, env: &Env, args: DoctorArgs) -> CliResult {
    let results = std::panic::catch_unwind(|| -> Result<Vec<CheckResult>, CliError> {
        let mut ctx =
            DoctorContext::load(config, env).map_err(|e| CliError::new(ExitStatus::Usage, e))?;
        ctx.node = snapshot(config, env);
        let wants_running = args
            .check
            .as_deref()
            .is_some_and(|c| RUNNING_CHECKS.iter().any(|k| k.name == c));
        // The running checks join in when a node answers (or are asked for).
        let lists: &[&[Check]] = if ctx.node.is_some() || wants_running {
            &[COLD_CHECKS, SERVICE_CHECKS, RUNNING_CHECKS]
        } else {
            &[COLD_CHECKS, SERVICE_CHECKS]
        };
        doctor::run(lists, &ctx, args.check.as_deref())
            .map_err(|e| CliError::new(ExitStatus::Usage, e))
    })
    .map_err(|_| {
        CliError::new(
            ExitStatus::Usage,
            anyhow!("doctor itself crashed; please report this"),
        )
    })??;

    if args.json {
        let ok = results.iter().all(|r| r.ok);
        println!("{}", serde_json::json!({ "ok": ok, "checks": results }));
    } else {
        print_report(&results);
    }
    Ok(if results.iter().all(|r| r.ok) {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// What the running node says of itself, if one answers; an answer that
/// is not the documents asked for is a finding, named by its field.
fn snapshot(config: Option<&Path>, env: &Env) -> Option<Result<NodeSnapshot, String>> {
    let loaded = hearthnet_config::load(config, env).ok()?;
    let client = hearthnet_client::LocalClient::for_config(&loaded)
        .ok()?
        .with_response_timeout(std::time::Duration::from_secs(3));
    let status = match client.status() {
        Ok(status) => status,
        Err(ClientError::Decode(e)) => return Some(Err(e.to_string())),
        Err(_) => return None,
    };
    let traces = match client.traces(100, None) {
        Ok(t) => t.traces,
        Err(ClientError::Decode(e)) => return Some(Err(e.to_string())),
        // Traces only feed the error-rate check: without them it counts
        // no calls rather than hiding the status checks.
        Err(_) => Vec::new(),
    };
    Some(Ok(NodeSnapshot { status, traces }))
}

fn print_report(results: &[CheckResult]) {
    let width = results.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for r in results {
        if r.ok {
            anstream::println!(
                "{PASS}✓{PASS:#} {:width$}  {DIM}{}{DIM:#}",
                r.name,
                r.detail
            );
        } else {
            anstream::println!("{FAIL}✗{FAIL:#} {:width$}  {}", r.name, r.detail);
        }
        if let Some(fix) = &r.fix {
            anstream::println!("    {FIX}fix:{FIX:#} {fix}");
        }
    }
}
