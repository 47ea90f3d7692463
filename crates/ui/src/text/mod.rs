//! Every English string the UI shows, in one table, so a translation is
//! another value of [`Text`] and no template holds prose of its own. The
//! words shared by every page are its fields; each page's own words are a
//! table of their own in this module (a field such as `t.market`).

use hearthnet_base::ErrorCode;

pub mod ask;
pub mod files;
pub mod join;
pub mod market;
pub mod messages;
pub mod settings;

/// The UI's words. Templates read them as `t.field`.
pub struct Text {
    pub product: &'static str,
    pub skip_to_content: &'static str,
    pub nav_label: &'static str,
    pub nav_home: &'static str,
    pub nav_ask: &'static str,
    pub nav_messages: &'static str,
    pub nav_market: &'static str,
    pub nav_files: &'static str,
    pub nav_emergency: &'static str,
    pub nav_settings: &'static str,
    pub log_out: &'static str,

    pub banner_online: &'static str,
    pub banner_degraded: &'static str,
    pub banner_offline: &'static str,
    pub banner_unwatched: &'static str,
    pub since: &'static str,

    pub this_node: &'static str,
    pub node_name: &'static str,
    pub node_id: &'static str,
    pub profile: &'static str,
    pub community: &'static str,
    pub members: &'static str,
    pub uptime: &'static str,
    pub capabilities: &'static str,
    pub none: &'static str,
    pub peers: &'static str,
    pub no_peers: &'static str,
    pub peer_serves: &'static str,
    pub activity: &'static str,
    pub no_activity: &'static str,
    pub activity_capability: &'static str,
    pub activity_result: &'static str,
    pub activity_where: &'static str,
    pub activity_here: &'static str,
    pub activity_neighbour: &'static str,
    pub activity_ms: &'static str,

    pub mode: &'static str,
    pub held_for: &'static str,
    pub probes: &'static str,
    pub probe_reachable: &'static str,
    pub probe_unreachable: &'static str,
    pub not_probed_yet: &'static str,
    pub still_works: &'static str,
    pub still_works_note: &'static str,
    pub withdrawn: &'static str,
    pub withdrawn_none: &'static str,
    pub emergency_unwatched: &'static str,

    pub refused_title: &'static str,
    pub refused_host: &'static str,
    pub refused_no_session: &'static str,
    pub refused_cross_origin: &'static str,
    pub refused_csrf: &'static str,
    pub refused_body: &'static str,
    pub refused_streams: &'static str,
    pub pair_title: &'static str,
    pub pair_intro: &'static str,
    pub pair_code: &'static str,
    pub pair_code_hint: &'static str,
    pub pair_submit: &'static str,
    pub pair_failed: &'static str,
    pub login_failed_title: &'static str,
    pub login_failed: &'static str,
    pub logged_out_title: &'static str,
    pub logged_out: &'static str,
    pub not_found_title: &'static str,
    pub not_found: &'static str,
    pub failed_title: &'static str,
    pub failed: &'static str,
    pub error_detail: &'static str,
    /// What each wire error code (Contract §5.4) means to a person and
    /// what to do about it, in [`ErrorCode::ALL`]'s order.
    pub errors: [&'static str; 13],

    pub seconds: &'static str,
    pub minutes: &'static str,
    pub hours: &'static str,
    pub days: &'static str,

    pub ask: ask::AskText,
    pub files: files::FilesText,
    pub settings: settings::SettingsText,
    pub market: market::MarketText,
    pub messages: messages::MessagesText,
    pub join: join::JoinText,
}

/// The UI in English.
pub static TEXT: Text = Text {
    product: "HearthNet",
    skip_to_content: "Skip to content",
    nav_label: "Pages",
    nav_home: "Home",
    nav_ask: "Ask",
    nav_messages: "Messages",
    nav_market: "Market",
    nav_files: "Files",
    nav_emergency: "Emergency",
    nav_settings: "Settings",
    log_out: "Log out",

    banner_online: "Online: the internet is reachable.",
    banner_degraded: "Degraded: some internet checks fail. Everything still works.",
    banner_offline: "Offline: the internet is unreachable. The community keeps working; what needs the internet is paused.",
    banner_unwatched: "The internet connection is not watched (emergency detection is off).",
    since: "since",

    this_node: "This node",
    node_name: "Name",
    node_id: "Node ID",
    profile: "Profile",
    community: "Community",
    members: "Members",
    uptime: "Running for",
    capabilities: "What this node offers",
    none: "nothing",
    peers: "Neighbours",
    no_peers: "No neighbour found yet. Neighbours on the same network appear here on their own.",
    peer_serves: "Offers",
    activity: "Recent activity",
    no_activity: "No calls yet.",
    activity_capability: "What",
    activity_result: "Result",
    activity_where: "Where",
    activity_here: "here",
    activity_neighbour: "a neighbour",
    activity_ms: "Time (ms)",

    mode: "Mode",
    held_for: "For",
    probes: "Internet checks",
    probe_reachable: "answers",
    probe_unreachable: "does not answer",
    not_probed_yet: "Not checked yet.",
    still_works: "What still works",
    still_works_note: "These run on this node or a neighbour, without the internet.",
    withdrawn: "Paused until the internet is back",
    withdrawn_none: "Nothing is paused.",
    emergency_unwatched: "Emergency detection is off (emergency.enabled = false in config.toml), so nothing is ever paused.",

    refused_title: "Not allowed",
    refused_host: "This page must be opened at the address `hearthnet ui link` prints (127.0.0.1, localhost or [::1] with the UI's port).",
    refused_no_session: "You are not logged in. Run `hearthnet ui link` on this computer and open the link it prints (on a device that has not joined a community yet, start `hearthnet run` again for a new link).",
    refused_cross_origin: "This request came from another web site and was refused. Use the HearthNet page itself.",
    refused_csrf: "This form is out of date. Reload the page and try again.",
    refused_body: "What was sent is too large. Send less at once.",
    refused_streams: "This browser has too many HearthNet pages following live updates. Close some tabs and reload this one.",
    pair_title: "Pair this device",
    pair_intro: "To use HearthNet on this device, enter the pairing code shown on the computer that runs the node (`hearthnet ui pair`, or Settings there).",
    pair_code: "Pairing code",
    pair_code_hint: "Ten letters and digits, such as 7KX2M-Q9PBD. Upper or lower case, with or without the dash.",
    pair_submit: "Pair",
    pair_failed: "That code did not work. Each code works once and for ten minutes, and after ten wrong tries every code stops working. Get a new code with `hearthnet ui pair` on the node's computer.",
    login_failed_title: "This login link does not work",
    login_failed: "Each link works once and for ten minutes. Run `hearthnet ui link` on this computer for a new one (on a device that has not joined a community yet, start `hearthnet run` again).",
    logged_out_title: "Logged out",
    logged_out: "You are logged out. Run `hearthnet ui link` on this computer to log in again (on a device that has not joined a community yet, start `hearthnet run` again).",
    not_found_title: "No such page",
    not_found: "There is no page here. Use the menu to go on.",
    failed_title: "Something went wrong",
    failed: "The node could not show this page. Try again; if it keeps failing, run `hearthnet doctor`.",
    error_detail: "Details",
    errors: [
        // bad_request
        "Something in what you entered is not accepted. Check the fields and try again.",
        // schema_mismatch
        "This node and the one that answered speak different versions of this service. Update HearthNet on both.",
        // invalid_signature
        "A neighbour's answer did not carry a valid signature, so it was not trusted. Try again; if it keeps happening, tell the community's trusted members.",
        // unauthorized
        "You are not allowed to do this. Ask a trusted member of the community if you think you should be.",
        // revoked
        "This device (or the one asked) was removed from the community. Ask a trusted member for a new invite.",
        // expired
        "This has expired. Start again to get a fresh one.",
        // not_found
        "Nothing was found: no neighbour offers this right now, or it no longer exists. Try again later.",
        // not_implemented
        "This node cannot do that yet.",
        // timeout
        "No answer in time. The neighbour may be busy or gone; try again in a moment.",
        // partition
        "The neighbour that could do this cannot be reached right now. It may be switched off or out of range; try again later.",
        // capacity_exceeded
        "Every neighbour that could do this is busy or full. Try again in a moment, or with something smaller.",
        // rate_limited
        "Too much at once. Wait a little and try again.",
        // internal_error
        "Something went wrong inside the node. Try again; if it keeps failing, run `hearthnet doctor`.",
    ],

    seconds: "s",
    minutes: "min",
    hours: "h",
    days: "d",

    ask: ask::ASK,
    files: files::FILES,
    settings: settings::SETTINGS,
    market: market::ENGLISH,
    messages: messages::ENGLISH,
    join: join::ENGLISH,
};

impl Text {
    /// The plain words for a wire error code.
    pub fn error_for(&self, code: ErrorCode) -> &'static str {
        let at = ErrorCode::ALL.iter().position(|c| *c == code);
        at.map_or(self.failed, |i| self.errors[i])
    }

    /// `seconds` as the largest two units, e.g. `3 h 2 min`.
    pub fn duration(&self, seconds: u64) -> String {
        let (d, h, m, s) = (
            seconds / 86_400,
            seconds % 86_400 / 3600,
            seconds % 3600 / 60,
            seconds % 60,
        );
        match seconds {
            0..60 => format!("{s} {}", self.seconds),
            60..3600 => format!("{m} {} {s} {}", self.minutes, self.seconds),
            3600..86_400 => format!("{h} {} {m} {}", self.hours, self.minutes),
            _ => format!("{d} {} {h} {}", self.days, self.hours),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(TEXT.duration(42), "42 s");
        assert_eq!(TEXT.duration(125), "2 min 5 s");
        assert_eq!(TEXT.duration(3 * 3600 + 120), "3 h 2 min");
        assert_eq!(TEXT.duration(2 * 86_400 + 3600), "2 d 1 h");
    }
}
