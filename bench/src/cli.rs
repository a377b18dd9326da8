//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load generator for chatd (chat and group modes) and for any MQTT broker (raw and connect modes).
///
/// Message modes: all clients connect first (MQTT 3.1.1, keep-alive 30 s), then the clock starts.
/// The run ends when every message is confirmed and delivered, when confirmations/deliveries stop
/// for the grace period, or at the duration limit, whichever comes first. `connect` measures
/// connections only.
#[derive(Debug, Parser)]
#[command(name = "chatbench", version)]
pub struct Cli {
    /// What to load.
    #[command(subcommand)]
    pub mode: Mode,
}

/// The kinds of load.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Chat load against chatd: N/2 senders send 1:1 text messages to N/2 receivers.
    ///
    /// Creates the users through the admin API, connects every user as `{user}:bench`, receivers
    /// subscribe to `user/{me}/inbox`, senders to `user/{me}/ack` and publish to `chat/{me}/send`.
    /// Measures acked and delivered msgs/s, send→delivery and send→ack latency, error acks and
    /// messages not delivered.
    ///
    /// With `--receipts`, receivers also send receipts on `chat/{me}/receipt` for every message
    /// delivered (batched), watching `user/{me}/ack` for refusals, and senders subscribe to
    /// `user/{me}/receipt`: adds receipts sent and forwarded/s, receipt publish → author latency,
    /// refused and missing receipts.
    Chat(ChatArgs),
    /// Group fan-out against chatd, with 1:1 latency measured alongside.
    ///
    /// Creates (or reuses) users `{prefix}-m0 … {prefix}-m{members-1}` and the pair users
    /// `{prefix}-pa{i}` → `{prefix}-pb{i}`, connects the first `--online` members as
    /// `{user}:bench` (the rest stay offline: their copies are queued durably), and `{prefix}-m0`
    /// creates a new group of all members over `chat/{me}/rpc` (`group.create`, then `group.add`
    /// in chunks). Once the inboxes are quiet, the pairs send 1:1 messages at `--pair-rate` for
    /// `--baseline-secs` (baseline), then members `m0 … m{senders-1}` send `--messages` group
    /// messages each, as fast as `--inflight` un-acked messages allow (or at `--rate`), while
    /// the pairs keep going.
    ///
    /// Reports group messages acked/s, deliveries/s (inbox copies received by the online
    /// members, over the fan-out window: first group send → last delivery), send→delivery
    /// latency, missing and duplicate copies, and the pairs' send→delivery latency before and
    /// during the fan-out.
    ///
    /// The first run creates the users (chatd hashes every password, about a minute for 1000
    /// users on a small machine: raise --duration-limit, which counts the setup); later runs
    /// reuse them. Copies queued for offline members stay queued: a later run that connects
    /// those members drains them before the clock starts (reported as backlog).
    Group(GroupArgs),
    /// Plain MQTT QoS 1 publish/subscribe against any broker: publisher i → topic bench/{i} →
    /// subscriber i.
    Raw(RawArgs),
    /// Connection figures of any MQTT broker: idle connections held, memory per connection,
    /// connects/s, CONNACK latency and, with `--storm`, reconnection after a server restart.
    ///
    /// Opens `--clients` raw TCP connections from source addresses spread over 127.1.0.1 …
    /// (`--sources` of them, bound before connecting), sends an MQTT 3.1.1 CONNECT as user
    /// `{prefix}{n}` with client id `{prefix}{n}` (n = offset + i; password: a JWT minted with `--jwt-secret`,
    /// the account password, or none), waits for CONNACK, optionally subscribes at QoS 0, then
    /// holds every socket idle (keep-alive 0 by default: the server never times it out).
    /// With `--pid`, reads the server's resident memory before and after (`/proc/PID/status`).
    ///
    /// With `--storm`, once all are connected (and `--ready-file` is written), waits until the
    /// server has closed every connection (restart it: SIGTERM, start again), then reconnects
    /// all of them as fast as `--concurrency` allows, retrying refused connections every
    /// `--retry-ms`, and reports the time from the first close seen to the last reconnection.
    Connect(ConnectArgs),
    /// Fills a chatd data directory offline with a large store, through chatd's own storage
    /// ports: `--users` accounts (`{prefix}{i}`, all with `--password`), each in `--peers` 1:1
    /// conversations with its neighbours on a ring, and `--messages` messages in random
    /// conversations, delivered (dequeued, as chatd does) except the last `--queued`, which
    /// wait in `{prefix}0`'s queue. Run it with chatd stopped.
    Generate(GenerateArgs),
    /// Start-up time of chatd on an existing data directory (e.g. one `generate` filled): runs
    /// `--chatd --config FILE` `--runs` times, each until its `listen.json` appears (written
    /// just before it logs `chatd ready`), then stops it with SIGTERM; then times opening the
    /// store and the message log alone, in this process, the way chatd opens them.
    Startup(StartupArgs),
    /// History and conversation reads against chatd on a generated store: connects
    /// `--clients` random users of it and sends `--requests` requests one at a time,
    /// alternately `history` (with a random partner) and `conversations`, on
    /// `chat/{me}/rpc`; reports the latency of each kind from publish to reply.
    Reads(ReadsArgs),
    /// The replay of a generated store's queued messages: connects `{prefix}0` (the user
    /// `generate` left `--queued` messages for), subscribes to its inbox and times the
    /// deliveries. The replay empties the queue: copy the data directory first to run it
    /// again.
    Replay(ReplayArgs),
}

/// How `chatbench connect` clients log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// An HS256 JWT (`sub` = user id) signed with `--jwt-secret`, as the password.
    Jwt,
    /// `--password` (chatd: an argon2 verification per login unless recently verified).
    Password,
    /// No user name or password (a broker that allows anonymous clients).
    None,
}

impl AuthMode {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Jwt => "jwt",
            AuthMode::Password => "password",
            AuthMode::None => "none",
        }
    }
}

/// What `chatbench connect` clients subscribe to after CONNACK (all at QoS 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SubscribeMode {
    /// Nothing.
    None,
    /// `user/{me}/#`.
    Own,
    /// `user/{me}/#` and `presence/{prefix}{n}` of the next client's user (in chatd: a rumqttd
    /// link and filter per connection).
    Presence,
}

impl SubscribeMode {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscribeMode::None => "none",
            SubscribeMode::Own => "own",
            SubscribeMode::Presence => "presence",
        }
    }
}

/// Options of `chatbench connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Server MQTT listener, host:port [default: 127.0.0.1:1883, or from --chatd-data]
    #[arg(long)]
    pub mqtt: Option<String>,
    /// chatd storage.path: read the MQTT address from its listen.json when --mqtt is absent
    #[arg(long, value_name = "DIR")]
    pub chatd_data: Option<PathBuf>,
    /// Connections to open and hold (one process holds at most its open-file limit minus a few)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub clients: u32,
    /// User ids and client ids are {prefix}{offset}, {prefix}{offset+1}, …
    #[arg(long, default_value = "conn")]
    pub prefix: String,
    /// Number of the first user (several chatbench processes, each under its open-file limit,
    /// take distinct ranges)
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
    /// How clients log in
    #[arg(long, value_enum, default_value_t = AuthMode::Jwt)]
    pub auth: AuthMode,
    /// HS256 secret for `--auth jwt` (chatd's `[auth] jwt_hs256_secret`)
    #[arg(long, env = "CHATBENCH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Password for `--auth password`
    #[arg(long, default_value = "chatbench-pw")]
    pub password: String,
    /// What each client subscribes to after CONNACK
    #[arg(long, value_enum, default_value_t = SubscribeMode::Own)]
    pub subscribe: SubscribeMode,
    /// MQTT keep-alive in seconds (0 = none: idle clients are never timed out)
    #[arg(long, default_value_t = 0)]
    pub keep_alive: u16,
    /// Connection attempts in flight at once
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,
    /// Source addresses (127.1.0.1 on), used round-robin
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub sources: u32,
    /// Longest wait for CONNACK (and SUBACK) once TCP is up, seconds
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub connack_timeout: u64,
    /// Server process id: its VmRSS is read before connecting and after --settle
    #[arg(long)]
    pub pid: Option<u32>,
    /// Seconds to wait after the last CONNACK before reading the memory again
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub settle: u64,
    /// Keep holding the connections this many more seconds, then read the memory once more
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub hold: u64,
    /// Measure a reconnect storm: wait for the server to close every connection, then reconnect
    #[arg(long)]
    pub storm: bool,
    /// Written (with the connected count) once all clients are connected and settled, so a
    /// script knows when to restart the server
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Storm: longest wait for the server to close all connections, seconds
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub storm_timeout: u64,
    /// Storm: pause before retrying a refused or failed connection, milliseconds
    #[arg(long, value_name = "MS", default_value_t = 25)]
    pub retry_ms: u64,
    /// Hard stop after this many seconds (whole run)
    #[arg(long, value_name = "SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration_limit: u64,
    /// Print the table on stderr and one JSON object line with all figures on stdout
    #[arg(long)]
    pub json: bool,
}

/// Options of `chatbench chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Where chatd is and how to administer it.
    #[command(flatten)]
    pub chatd: ChatdArgs,
    /// Users in total (even; half send, half receive)
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub users: u32,
    /// User ids are {prefix}0, {prefix}1, …
    #[arg(long, default_value = "bench")]
    pub prefix: String,
    /// MQTT listener the receivers connect to, host:port: another node of a cluster, so every
    /// message crosses nodes [default: the senders' listener]
    #[arg(long, value_name = "HOST:PORT")]
    pub receivers_mqtt: Option<String>,
    /// Receipts receivers send for every message delivered: `none`, `read`, or `delivered-read`
    /// (a `delivered` receipt, then a `read` receipt for the same ids)
    #[arg(long, value_enum, default_value_t = ReceiptMode::None)]
    pub receipts: ReceiptMode,
    /// Message ids per receipt publish: a receiver publishes when this many are pending, or
    /// every 20 ms whatever is pending
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub receipt_batch: u16,
    /// Sustained run: send for this many seconds at `--rate` (sets the messages per sender to
    /// rate × duration / senders; `--messages` is ignored)
    #[arg(long, value_name = "SECS", requires = "rate", value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: Option<u64>,
    /// Seconds per window of the per-window latency lines and report (0: none)
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub window: u64,
    /// chatd's process id: its resident memory is read at the end of every window, and the CPU
    /// time it spends per message is reported
    #[arg(long)]
    pub pid: Option<u32>,
    /// Load parameters.
    #[command(flatten)]
    pub load: LoadArgs,
}

impl ChatArgs {
    /// Messages each sender sends: `--messages`, or what `--duration` at `--rate` makes.
    pub fn messages_per_sender(&self) -> u64 {
        match self.duration {
            Some(secs) => {
                let senders = u64::from((self.users / 2).max(1));
                (self.load.rate.saturating_mul(secs)).div_ceil(senders)
            }
            None => self.load.messages,
        }
    }

    /// The hard stop: `--duration-limit`, raised to leave a sustained run a minute for its
    /// setup and end.
    pub fn duration_limit(&self) -> u64 {
        let sustained = self
            .duration
            .map_or(0, |d| d.saturating_add(self.load.grace).saturating_add(60));
        self.load.duration_limit.max(sustained)
    }
}

/// How to reach and administer chatd (chat and group modes).
#[derive(Debug, Clone, Args)]
pub struct ChatdArgs {
    /// chatd MQTT listener, host:port [default: 127.0.0.1:1883, or from --chatd-data]
    #[arg(long)]
    pub mqtt: Option<String>,
    /// chatd HTTP listener (admin API), host:port [default: 127.0.0.1:8080, or from --chatd-data]
    #[arg(long)]
    pub http: Option<String>,
    /// Admin bearer token [default: from --chatd-data]
    #[arg(long, env = "CHATBENCH_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// chatd storage.path: read listen.json and admin.token from there for missing options
    #[arg(long, value_name = "DIR")]
    pub chatd_data: Option<PathBuf>,
    /// Password of the benchmark users (set when they are created; existing users keep theirs)
    #[arg(long, default_value = "chatbench-pw")]
    pub password: String,
}

/// Options of `chatbench group`.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// Where chatd is and how to administer it.
    #[command(flatten)]
    pub chatd: ChatdArgs,
    /// Group members, the creator included (chatd allows `limits.max_group_members`, 1024 by
    /// default)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub members: u32,
    /// Members connected during the run (the first ones); default: all
    #[arg(long)]
    pub online: Option<u32>,
    /// More MQTT listeners (other nodes of a cluster), host:port, comma-separated: member `i`
    /// connects to listener `i mod n` of the main one and these, so the fan-out crosses nodes
    #[arg(long, value_name = "HOST:PORT,…", value_delimiter = ',')]
    pub members_mqtt: Vec<String>,
    /// Members sending group messages (the first ones; each sends --messages)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub senders: u32,
    /// Pairs of extra users exchanging 1:1 messages during the whole measurement (0 = none)
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub pairs: u32,
    /// Total rate of the pairs' 1:1 messages, msgs/s
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub pair_rate: u64,
    /// Seconds of 1:1 traffic alone (the baseline) before the fan-out starts
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub baseline_secs: u64,
    /// User ids are {prefix}-m{i} (members), {prefix}-pa{i} and {prefix}-pb{i} (pairs)
    #[arg(long, default_value = "grp")]
    pub prefix: String,
    /// Load parameters of the group senders (`--messages` per sender, `--rate` over all of
    /// them, `--inflight` per sender, `--payload`).
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Which receipts `chatbench chat` receivers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReceiptMode {
    /// No receipts.
    None,
    /// One `read` receipt per message.
    Read,
    /// A `delivered` receipt, then a `read` receipt, per message.
    DeliveredRead,
}

impl ReceiptMode {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptMode::None => "none",
            ReceiptMode::Read => "read",
            ReceiptMode::DeliveredRead => "delivered-read",
        }
    }
}

/// Options of `chatbench raw`.
#[derive(Debug, Args)]
pub struct RawArgs {
    /// Broker address, host:port
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub mqtt: String,
    /// Publisher/subscriber pairs
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub pairs: u32,
    /// The broker's process id: the CPU time it spends per message is reported
    #[arg(long)]
    pub pid: Option<u32>,
    /// Load parameters.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Options common to all modes.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Messages per sender
    #[arg(long, default_value_t = 1000)]
    pub messages: u64,
    /// Total target rate over all senders, msgs/s (0 = as fast as the in-flight window allows)
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Message text (chat, group) / payload (raw) size in bytes (at least 41 are sent)
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=16_000_000))]
    pub payload: u32,
    /// Un-acknowledged messages allowed per sender
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub inflight: u16,
    /// Hard stop after this many seconds (whole run, setup included)
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration_limit: u64,
    /// Seconds to wait for outstanding acks/deliveries once nothing progresses
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub grace: u64,
    /// Print the table on stderr and one JSON object line with all figures on stdout
    #[arg(long)]
    pub json: bool,
    /// Leave Nagle's algorithm on in the load's clients (no TCP_NODELAY), as many MQTT client
    /// libraries do (paho-mqtt for Python, rumqttc by default, many embedded ones)
    #[arg(long)]
    pub nagle: bool,
    /// The load's clients keep persistent MQTT sessions (CleanSession 0), as phone apps do:
    /// the server then also keeps a copy of every unacknowledged PUBLISH to resend
    #[arg(long)]
    pub persistent: bool,
}

/// Options of `chatbench generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// chatd data directory (`storage.path`) to fill; its store must hold no messages yet
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Engine of a new store (an existing store keeps its own)
    #[arg(long, default_value = "fjall")]
    pub engine: chatd_kv::Engine,
    /// Messages in total, the queued ones included
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: u64,
    /// Accounts
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(2..=10_000_000))]
    pub users: u32,
    /// 1:1 conversation partners per user (even)
    #[arg(long, default_value_t = 10, value_parser = parse_peers)]
    pub peers: u32,
    /// User ids are {prefix}0, {prefix}1, …
    #[arg(long, default_value = "gen")]
    pub prefix: String,
    /// Password of every account
    #[arg(long, default_value = "chatbench-pw")]
    pub password: String,
    /// Messages left undelivered in {prefix}0's queue (the last ones written)
    #[arg(long, default_value_t = 10_000)]
    pub queued: u64,
    /// Text size in bytes
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=64_000))]
    pub text: u32,
    /// Messages per commit (one unit each)
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch: u64,
    /// node.id in the message ids (as chatd's `node.id`)
    #[arg(long, default_value_t = 1)]
    pub node: u16,
    /// Seed of the random choice of conversations and texts
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the table on stderr and one JSON object line with all figures on stdout
    #[arg(long)]
    pub json: bool,
}

/// Options of `chatbench startup`.
#[derive(Debug, Args)]
pub struct StartupArgs {
    /// The chatd binary
    #[arg(long, value_name = "FILE", default_value = "target/release/chatd")]
    pub chatd: PathBuf,
    /// chatd's configuration file
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The configuration's `storage.path`
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Start-ups to time
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Longest wait for one start-up, seconds
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
    /// Print the table on stderr and one JSON object line with all figures on stdout
    #[arg(long)]
    pub json: bool,
}

/// A chatd serving a generated store, and the store's users (reads and replay modes).
#[derive(Debug, Clone, Args)]
pub struct GeneratedArgs {
    /// chatd MQTT listener, host:port [default: from --chatd-data, else 127.0.0.1:1883]
    #[arg(long)]
    pub mqtt: Option<String>,
    /// chatd storage.path: read the MQTT address from its listen.json when --mqtt is absent
    #[arg(long, value_name = "DIR")]
    pub chatd_data: Option<PathBuf>,
    /// Users of the store (as given to `generate`)
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(2..=10_000_000))]
    pub users: u32,
    /// Conversation partners per user (as given to `generate`)
    #[arg(long, default_value_t = 10, value_parser = parse_peers)]
    pub peers: u32,
    /// User id prefix (as given to `generate`)
    #[arg(long, default_value = "gen")]
    pub prefix: String,
    /// Password of the users (as given to `generate`)
    #[arg(long, default_value = "chatbench-pw")]
    pub password: String,
    /// Hard stop after this many seconds (whole run)
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration_limit: u64,
    /// Print the table on stderr and one JSON object line with all figures on stdout
    #[arg(long)]
    pub json: bool,
}

impl GeneratedArgs {
    /// The users and conversations of the store.
    pub fn population(&self) -> crate::population::Population {
        crate::population::Population {
            prefix: self.prefix.clone(),
            users: self.users,
            peers: self.peers,
        }
    }
}

/// Options of `chatbench reads`.
#[derive(Debug, Args)]
pub struct ReadsArgs {
    /// The server and the store's users.
    #[command(flatten)]
    pub store: GeneratedArgs,
    /// Requests in total (half `history`, half `conversations`)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub requests: u32,
    /// Distinct random users connected to send them (chatd allows each
    /// `limits.requests_burst`, 200 by default, at once)
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub clients: u32,
    /// `limit` of every request (history: 1–100, conversations: 1–200)
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: u32,
    /// Seed of the choice of users and partners
    #[arg(long, default_value_t = 2)]
    pub seed: u64,
}

/// Options of `chatbench replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The server and the store's users.
    #[command(flatten)]
    pub store: GeneratedArgs,
    /// Messages expected (`generate --queued`): the run ends when that many have arrived
    #[arg(long, default_value_t = 10_000)]
    pub expect: u64,
    /// Seconds without a delivery after which the run ends anyway
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub quiet: u64,
}

/// `--peers`: an even number from 2 on.
fn parse_peers(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if n < 2 || !n.is_multiple_of(2) {
        return Err("an even number, at least 2".into());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sustained_run_sends_rate_times_duration() {
        let cli = Cli::try_parse_from([
            "chatbench",
            "chat",
            "--users",
            "20",
            "--rate",
            "5000",
            "--duration",
            "300",
        ])
        .expect("parses");
        let Mode::Chat(args) = cli.mode else {
            panic!("not chat")
        };
        assert_eq!(args.messages_per_sender(), 150_000);
        assert_eq!(args.duration_limit(), 300 + 5 + 60);
        // --duration needs a rate.
        assert!(Cli::try_parse_from(["chatbench", "chat", "--duration", "60"]).is_err());
        let plain = Cli::try_parse_from(["chatbench", "chat", "--messages", "7"]).expect("parses");
        let Mode::Chat(args) = plain.mode else {
            panic!("not chat")
        };
        assert_eq!(
            (args.messages_per_sender(), args.duration_limit()),
            (7, 120)
        );
    }

    #[test]
    fn peers_must_be_even() {
        assert_eq!(parse_peers("10"), Ok(10));
        assert!(parse_peers("3").is_err());
        assert!(parse_peers("0").is_err());
        assert!(parse_peers("x").is_err());
    }
}
