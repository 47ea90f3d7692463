//! One module per subcommand; each entry function stays small and
//! delegates to helpers that tests can call without argument parsing.

mod api_key;
mod ask;
mod call;
mod caps;
mod chat;
mod doctor;
mod erase;
mod export;
mod file;
mod identity;
mod init;
mod installed_models;
mod invite;
mod leave;
mod log;
mod market;
mod node_client;
mod proposal;
mod rag;
mod run;
mod status;
mod sync;
mod trace;
mod ui;
mod version;

use crate::cli::{
    ChatCommand, Cli, Command, FileCommand, InviteCommand, MarketCommand, ProposalCommand,
    RagCommand, TraceCommand, UiCommand,
};
use crate::exit::CliResult;

pub fn dispatch(cli: Cli) -> CliResult {
    let env = hearthnet_config::Env::from_process();
    match cli.command {
        Command::Init(args) => init::run(cli.config.as_deref(), &env, args),
        Command::Version => version::run(),
        Command::Identity => identity::run(cli.config.as_deref(), &env),
        Command::Doctor(args) => doctor::run(cli.config.as_deref(), &env, args),
        Command::Run(args) => run::run(cli.config.as_deref(), &env, args),
        Command::Status(args) => status::run(cli.config.as_deref(), &env, args),
        Command::Caps(args) => caps::run(cli.config.as_deref(), &env, args),
        Command::Call(args) => call::run(cli.config.as_deref(), &env, args),
        Command::Log(args) => log::run(cli.config.as_deref(), &env, args),
        Command::Invite(InviteCommand::Create(args)) => {
            invite::create(cli.config.as_deref(), &env, args)
        }
        Command::Invite(InviteCommand::Redeem(args)) => {
            invite::redeem(cli.config.as_deref(), &env, &args.invite)
        }
        Command::Sync(args) => sync::run(cli.config.as_deref(), &env, args),
        Command::Trace(TraceCommand::Recent(args)) => trace::run(cli.config.as_deref(), &env, args),
        Command::File(command) => {
            let config = cli.config.as_deref();
            match command {
                FileCommand::Add(args) => file::add(config, &env, args),
                FileCommand::Get(args) => file::get(config, &env, args),
                FileCommand::Ls(args) => file::ls(config, &env, args),
                FileCommand::Pin(args) => file::pin(config, &env, &args.cid, true),
                FileCommand::Unpin(args) => file::pin(config, &env, &args.cid, false),
            }
        }
        Command::Rag(RagCommand::List(args)) => rag::list(cli.config.as_deref(), &env, args),
        Command::Rag(RagCommand::Ingest(args)) => rag::ingest(cli.config.as_deref(), &env, args),
        Command::Rag(RagCommand::Reindex(args)) => rag::reindex(cli.config.as_deref(), &env, args),
        Command::Ask(args) => ask::run(cli.config.as_deref(), &env, args),
        Command::Market(command) => {
            let config = cli.config.as_deref();
            match command {
                MarketCommand::Post(args) => market::post(config, &env, args),
                MarketCommand::Ls(args) => market::ls(config, &env, args),
                MarketCommand::Search(args) => market::search(config, &env, args),
                MarketCommand::Expire(args) => market::expire(config, &env, args),
            }
        }
        Command::ApiKey(args) => api_key::run(cli.config.as_deref(), &env, args),
        Command::Chat(ChatCommand::Send(args)) => chat::send(cli.config.as_deref(), &env, args),
        Command::Chat(ChatCommand::History(args)) => {
            chat::history(cli.config.as_deref(), &env, args)
        }
        Command::Ui(UiCommand::Link) => ui::link(cli.config.as_deref(), &env),
        Command::Ui(UiCommand::Pair) => ui::pair(cli.config.as_deref(), &env),
        Command::Export(args) => export::run(cli.config.as_deref(), &env, args),
        Command::Leave(args) => leave::run(cli.config.as_deref(), &env, args),
        Command::Erase(args) => erase::run(cli.config.as_deref(), &env, args),
        Command::Proposal(command) => {
            let config = cli.config.as_deref();
            match command {
                ProposalCommand::Revoke(args) => proposal::revoke(config, &env, args),
                ProposalCommand::Demote(args) => proposal::demote(config, &env, args),
                ProposalCommand::Cosign(args) => proposal::cosign(config, &env, args),
                ProposalCommand::Submit(args) => proposal::submit(config, &env, args),
            }
        }
    }
}
