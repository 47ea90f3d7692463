//! What the benchmark examples share: deterministic data (neighbourhood
//! notes made from templates, the questions people ask of them, stand-in
//! vectors; the same seed gives the same data on every machine), and the
//! process's CPU time.
//!
//! Like real notes, each document is about a few things (its topic: some
//! items and places out of a few thousand, popular ones more often) and
//! names people and streets from a long tail, so that a word of a
//! question occurs in a small share of the chunks, not in most of them.
//! `ragbench` prints how many chunks the questions' words match.

// Shared by the benchmark examples, each using part of it.
#![allow(dead_code)]

const THINGS: &[&str] = &[
    "ladder",
    "chainsaw",
    "generator",
    "water filter",
    "hand pump",
    "camping stove",
    "first-aid kit",
    "wheelbarrow",
    "pressure washer",
    "cement mixer",
    "bicycle trailer",
    "rain barrel",
    "solar panel",
    "car battery",
    "walkie-talkie",
    "sewing machine",
    "drill",
    "extension cable",
    "tarpaulin",
    "sleeping bag",
    "wood stove",
    "snow shovel",
    "lawn mower",
    "defibrillator",
    "radio",
    "torch",
    "canned beans",
    "powdered milk",
    "seed potatoes",
    "bread oven",
    "jump starter",
    "water tank",
    "fire extinguisher",
    "gas cylinder",
    "tent",
    "cargo bike",
    "hedge trimmer",
    "soldering iron",
    "multimeter",
    "inflatable boat",
    "sandbags",
    "dehumidifier",
    "space heater",
    "baby carrier",
    "wheelchair",
    "crutches",
    "blood pressure monitor",
    "thermometer",
    "insulin cooler",
    "power bank",
    "inverter",
    "chest freezer",
    "pickling jars",
    "apple press",
    "grain mill",
    "beehive",
    "compost bin",
    "chicken coop",
    "greenhouse",
    "scaffolding",
    "angle grinder",
    "circular saw",
    "welder",
    "paint sprayer",
    "tile cutter",
    "carpet cleaner",
    "projector",
    "loudspeaker",
    "megaphone",
    "folding tables",
    "trestle benches",
    "gazebo",
    "barbecue",
    "soup pot",
    "coffee urn",
    "dishwasher",
    "bread maker",
    "pasta machine",
    "canning kettle",
    "smoker",
    "hand truck",
    "roof rack",
    "bike pump",
    "tyre levers",
    "chain tool",
    "ski rack",
    "sledge",
    "snow chains",
    "ice scraper",
    "salt spreader",
    "leaf blower",
    "log splitter",
    "axe",
    "bow saw",
    "rope",
    "harness",
    "climbing helmet",
    "life jacket",
    "fishing net",
    "kayak",
    "telescope",
    "microscope",
    "sewing kit",
    "knitting machine",
    "loom",
    "pottery wheel",
    "kiln",
    "printing press",
    "typewriter",
    "record player",
    "piano",
    "accordion",
    "drum kit",
    "violin",
    "chessboard",
    "puzzle boxes",
    "board games",
];
const PLACE_KINDS: &[&str] = &[
    "community centre",
    "fire station",
    "parish cellar",
    "school hall",
    "mill",
    "pharmacy",
    "kindergarten",
    "allotments",
    "tool library",
    "repair café",
    "sports hall",
    "bakery",
    "town hall",
    "library",
    "church tower",
    "bus depot",
    "market square",
    "youth club",
    "health centre",
    "swimming pool",
    "farm shop",
    "boathouse",
    "brewery",
    "cinema",
    "museum",
    "post office",
    "railway station",
    "village green",
    "scout hut",
    "chapel",
    "orchard",
    "campsite",
    "garage",
    "warehouse",
    "laundrette",
    "dairy",
    "forge",
    "tennis club",
    "rowing club",
    "care home",
];
const PLACE_NAMES: &[&str] = &[
    "north",
    "south",
    "east",
    "west",
    "old",
    "new",
    "upper",
    "lower",
    "St. Mary's",
    "St. Johann",
    "Linden",
    "Birken",
    "Eichen",
    "Riverside",
    "Hillside",
    "Mühlbach",
    "Kirchberg",
    "Sonnen",
    "Wiesen",
    "Brook",
    "Elm",
    "Oak",
    "Harbour",
    "Castle",
];
const DAYS: &[&str] = &[
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const VERBS: &[&str] = &[
    "repairs",
    "lends",
    "checks",
    "cleans",
    "stores",
    "collects",
    "tests",
    "refills",
    "organises",
    "looks after",
    "sharpens",
    "tunes",
    "inspects",
    "oils",
    "insures",
    "replaces",
    "paints",
    "registers",
    "borrows",
    "donates",
];
const TASKS: &[&str] = &[
    "carry", "sort", "repair", "count", "paint", "test", "clean", "move", "label", "fill", "dry",
    "stack", "weigh", "wrap", "deliver", "assemble",
];
const CRISES: &[&str] = &[
    "power cut",
    "flood",
    "heat wave",
    "storm",
    "frost",
    "water shortage",
    "snowstorm",
    "network outage",
    "gas leak",
    "landslide",
    "wildfire",
    "drought",
];
const UTILITIES: &[&str] = &[
    "heating",
    "electricity",
    "water supply",
    "phone network",
    "internet",
    "gas supply",
    "sewage pump",
    "street lighting",
    "hot water",
    "lift",
];
const GROUPS: &[&str] = &[
    "families with babies",
    "older neighbours",
    "people without a car",
    "the volunteers",
    "everyone on the street",
    "the first-aid team",
    "households without heating",
    "people on dialysis",
    "the night shift",
    "pet owners",
    "students",
    "new arrivals",
];
const EVENTS: &[&str] = &[
    "seed exchange",
    "repair evening",
    "street party",
    "radio check-in",
    "first-aid course",
    "harvest festival",
    "clean-up day",
    "flea market",
    "choir rehearsal",
    "book swap",
    "blood drive",
    "cycling tour",
    "language café",
    "quiz night",
    "plant sale",
    "open mic",
];
const ADJECTIVES: &[&str] = &[
    "old",
    "heavy",
    "spare",
    "broken",
    "new",
    "small",
    "electric",
    "shared",
    "blue",
    "rusty",
    "borrowed",
    "second-hand",
    "folding",
    "portable",
    "waterproof",
    "antique",
];
const SYLLABLES: &[&str] = &[
    "an", "ber", "da", "el", "fen", "gra", "hol", "in", "ja", "kel", "lin", "mar", "no", "ot",
    "per", "ros", "sa", "ten", "ul", "ver", "wes", "zin", "bru", "cha", "dor", "ka", "lo", "mi",
    "ra", "tho",
];
const STREET_KINDS: &[&str] = &["straße", "weg", "gasse", " Lane", " Road", "allee", "platz"];

/// CPU time this process has used (user and system, all threads): the
/// machine is shared, and CPU time moves much less with its load than
/// wall time does.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks as f64 / 100.0
}

/// Sentence forms; a document uses a few of them.
const FORMS: usize = 20;

/// SplitMix64: small, fast and good enough to vary text.
pub struct Text {
    state: u64,
    /// What the current document is about: indices into `THINGS`, into
    /// the places (`PLACE_NAMES` × `PLACE_KINDS`) and sentence forms.
    things: Vec<usize>,
    places: Vec<usize>,
    forms: Vec<usize>,
}

impl Text {
    pub fn new(seed: u64) -> Self {
        let mut text = Self {
            state: seed,
            things: Vec::new(),
            places: Vec::new(),
            forms: Vec::new(),
        };
        text.new_topic();
        text
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        list[self.below(list.len())]
    }

    /// Roughly Zipf-distributed in `0..n`: low indices are common, the
    /// tail is long.
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) as usize).saturating_sub(1).min(n - 1)
    }

    /// A new topic: two to four things, one to three places and three
    /// sentence forms.
    pub fn new_topic(&mut self) {
        self.things = (0..2 + self.below(3))
            .map(|_| self.below(THINGS.len()))
            .collect();
        let places = PLACE_NAMES.len() * PLACE_KINDS.len();
        self.places = (0..1 + self.below(3)).map(|_| self.below(places)).collect();
        self.forms = (0..3).map(|_| self.below(FORMS)).collect();
    }

    /// Mostly the topic's own, sometimes anything.
    fn thing(&mut self) -> &'static str {
        let i = match self.below(5) {
            0 => self.zipf(THINGS.len()),
            _ => {
                let k = self.below(self.things.len());
                self.things[k]
            }
        };
        THINGS[i]
    }

    fn place_of(i: usize) -> String {
        let name = PLACE_NAMES[i % PLACE_NAMES.len()];
        let kind = PLACE_KINDS[(i / PLACE_NAMES.len()) % PLACE_KINDS.len()];
        format!("{name} {kind}")
    }

    fn place(&mut self) -> String {
        let i = match self.below(5) {
            0 => self.zipf(PLACE_NAMES.len() * PLACE_KINDS.len()),
            _ => {
                let k = self.below(self.places.len());
                self.places[k]
            }
        };
        Self::place_of(i)
    }

    /// The invented word number `i`: two or three syllables.
    fn word(i: usize) -> String {
        let n = SYLLABLES.len();
        let mut word = String::new();
        let mut rest = i;
        for _ in 0..2 + i % 2 {
            word.push_str(SYLLABLES[rest % n]);
            rest /= n;
        }
        let mut chars = word.chars();
        chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect())
            .unwrap_or_default()
    }

    fn name(&mut self) -> String {
        let first = Self::word(self.zipf(400));
        let last = Self::word(1000 + self.zipf(20_000));
        format!("{first} {last}")
    }

    fn street(&mut self) -> String {
        let kind = self.pick(STREET_KINDS);
        format!("{}{kind}", Self::word(30_000 + self.zipf(5_000)))
    }

    /// A sentence about the current topic.
    pub fn sentence(&mut self) -> String {
        let (name, street, place) = (self.name(), self.street(), self.place());
        let (thing, day) = (self.thing(), self.pick(DAYS));
        let number = 1 + self.zipf(120);
        let k = self.below(self.forms.len());
        let form = self.forms[k];
        let (event, month, task) = (self.pick(EVENTS), self.pick(MONTHS), self.pick(TASKS));
        let (adjective, utility) = (self.pick(ADJECTIVES), self.pick(UTILITIES));
        let (crisis, group, verb) = (self.pick(CRISES), self.pick(GROUPS), self.pick(VERBS));
        let (hour, until) = (6 + self.below(6), 14 + self.below(8));
        match form {
            0 => format!("{name} {verb} the {thing} at the {place} on {street} every {day}."),
            1 => format!(
                "The {place} on {street} opens at {hour} o'clock on {day} and closes at {until}."
            ),
            2 => format!(
                "Bring the {thing} to the {event} at the {place}; {name} will {task} it there."
            ),
            3 => format!("During a {crisis}, the {thing} in the {place} is kept for {group}."),
            4 => format!(
                "{name} from {street} {number} can lend a {adjective} {thing} until {month}."
            ),
            5 => format!("If the {utility} fails, call {name} or go to the {place} near {street}."),
            6 => format!(
                "We need {number} volunteers to {task} the {thing} before the {event} in {month}."
            ),
            7 => format!(
                "The {adjective} {thing} was fixed by {name} last {day} and would cost {number} euros to replace."
            ),
            8 => format!("Keys for the {place} are with {name}, who lives at {street} {number}."),
            9 => format!(
                "On {day} evenings the {event} meets at the {place}, and {name} brings the {thing}."
            ),
            10 => format!("Please sign the list at the {place} before taking the {thing} home."),
            11 => format!(
                "Our {thing} is {adjective} now; {name} thinks a new one costs about {number} euros."
            ),
            12 => format!("From {month} onwards the {event} moves from the {place} to {street}."),
            13 => {
                format!("Nobody may use the {thing} alone: ask {name}, who was trained in {month}.")
            }
            14 => format!(
                "When the {utility} is down, the {place} has light, water and a charged {thing}."
            ),
            15 => format!(
                "Thank you, {name}, for {task}ing the {thing} for {group} after the {crisis}."
            ),
            16 => format!(
                "The {thing} stands in the back room of the {place}, behind the {adjective} door."
            ),
            17 => format!("Report damage to the {thing} by {day} noon, so {name} can order parts."),
            18 => format!(
                "Children under {number} need an adult with them at the {place} on {street}."
            ),
            _ => format!(
                "Last {month} the {crisis} closed the {place} for {number} days; {group} went to {street}."
            ),
        }
    }

    /// A Markdown note on a new topic: a title, then paragraphs.
    pub fn document(&mut self, paragraphs: usize) -> String {
        self.new_topic();
        let mut doc = format!("# The {} at the {}\n\n", self.thing(), self.place());
        for _ in 0..paragraphs {
            let sentences: Vec<String> = (0..3 + self.below(5)).map(|_| self.sentence()).collect();
            doc.push_str(&sentences.join(" "));
            doc.push_str("\n\n");
        }
        doc
    }

    /// A random unit vector: a stand-in where what a vector holds does not
    /// change what is measured.
    pub fn unit_vector(&mut self, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    /// A question about anything (popular things more often).
    pub fn question(&mut self) -> String {
        self.new_topic();
        let (thing, place) = (self.thing(), self.place());
        match self.below(6) {
            0 => format!("Where can I borrow a {thing}?"),
            1 => format!("Who looks after the {thing} at the {place}?"),
            2 => format!("When does the {place} on {} open?", self.street()),
            3 => format!("What should I do if the {} fails?", self.pick(UTILITIES)),
            4 => format!("Who has the keys for the {place}?"),
            _ => format!(
                "What is kept at the {place} during a {}?",
                self.pick(CRISES)
            ),
        }
    }
}
