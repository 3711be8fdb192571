//! How far each member's shared energy drifts over a month from its exact
//! pro rata total, under the plain cumulative floor in prosumer-id order
//! (the rounding rule before issue 13, kept here to compare) and under the
//! rule of `microgrid::clearing` (systematic rounding with the timeframe's
//! low-discrepancy offset).
//!
//! ```sh
//! cargo run --release -p microgrid-benches --example rounding_deviation [-- <seeds>]
//! ```
//!
//! For each community it prints, per rule, the worst and the mean absolute
//! deviation of a member's month total from its exact pro rata total (Wh),
//! their sum over members (zero: each timeframe conserves energy), and the
//! largest standard deviation `√Σ frac(x)(1 − frac(x))` a member's total
//! would have if its rounding errors were independent. Then it clears
//! `<seeds>` (default 200) more simulated 10-household months and
//! `<seeds> / 20` 1,000-household ones, and prints the worst member of all,
//! how many members ended more than 2 Wh a day off, and the largest
//! deviation in standard deviations.

use chrono::NaiveDate;
use microgrid::simulate::Community;
use microgrid::{clear_columns, ReadingMatrix, Result, Timeframe, TimeframeLength, Wh};

/// The rounding rule before issue 13: the cumulative floor in prosumer-id
/// order, `⌊c_i·shared/W⌋ − ⌊c_{i−1}·shared/W⌋`, whatever the timeframe.
fn old_rule(produced: &[Wh], consumed: &[Wh], community: &mut [Wh]) {
    let net: Vec<i64> = produced
        .iter()
        .zip(consumed)
        .map(|(p, c)| p.get() - c.get())
        .collect();
    let supply: i128 = net.iter().map(|&x| i128::from(x.max(0))).sum();
    let demand: i128 = net.iter().map(|&x| i128::from((-x).max(0))).sum();
    let shared = supply.min(demand);
    let (mut sold_upto, mut bought_upto) = (0i128, 0i128);
    let (mut running_s, mut running_d) = (0i128, 0i128);
    for (i, &x) in net.iter().enumerate() {
        community[i] = if x > 0 {
            running_s += i128::from(x);
            let upto = running_s * shared / supply;
            let part = upto - sold_upto;
            sold_upto = upto;
            Wh::new(part as i64)
        } else if x < 0 {
            running_d += i128::from(-x);
            let upto = running_d * shared / demand;
            let part = upto - bought_upto;
            bought_upto = upto;
            Wh::new(-(part as i64))
        } else {
            Wh::ZERO
        };
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Rule {
    Old,
    New,
}

/// What a month under one rule gives per member.
struct Month {
    /// Σ_t (share − exact share), in units of 10^-9 Wh (each term rounded
    /// down: exact to far below a Wh).
    deviation: Vec<i128>,
    /// Σ_t frac(x)(1 − frac(x)) of the exact shares `x`.
    variance: Vec<f64>,
}

const NANO: i128 = 1_000_000_000;

/// Clears every timeframe `t` of `rows` timeframes from `first`, with the
/// readings `row(t)`, under `rule`.
fn month(
    rule: Rule,
    first: Timeframe,
    rows: usize,
    n: usize,
    row: impl Fn(usize) -> (Vec<Wh>, Vec<Wh>),
) -> Result<Month> {
    let mut out = Month {
        deviation: vec![0; n],
        variance: vec![0.0; n],
    };
    let mut community = vec![Wh::ZERO; n];
    let mut tf = first;
    for t in 0..rows {
        let (produced, consumed) = row(t);
        match rule {
            Rule::Old => old_rule(&produced, &consumed, &mut community),
            Rule::New => {
                clear_columns(&tf, &produced, &consumed, &mut community)?;
            }
        }
        let net: Vec<i128> = produced
            .iter()
            .zip(&consumed)
            .map(|(p, c)| i128::from(p.get() - c.get()))
            .collect();
        let supply: i128 = net.iter().map(|&x| x.max(0)).sum();
        let demand: i128 = net.iter().map(|&x| (-x).max(0)).sum();
        let shared = supply.min(demand);
        // Σ e over each side is exactly zero: the shares add up to `shared`.
        let mut check = [0i128; 2];
        for i in 0..n {
            let (weight, total, mine) = if net[i] > 0 {
                (net[i], supply, i128::from(community[i].get()))
            } else if net[i] < 0 {
                (-net[i], demand, -i128::from(community[i].get()))
            } else {
                continue;
            };
            // share − weight·shared/total, exactly e/total:
            let e = mine * total - weight * shared;
            check[usize::from(net[i] < 0)] += e;
            out.deviation[i] += (e * NANO).div_euclid(total);
            let f = ((weight * shared) % total) as f64 / total as f64;
            out.variance[i] += f * (1.0 - f);
        }
        assert_eq!(check, [0, 0], "timeframe {t} does not conserve energy");
        tf = tf.next();
    }
    Ok(out)
}

fn wh(nano: i128) -> f64 {
    nano as f64 / NANO as f64
}

fn worst(m: &Month) -> f64 {
    m.deviation.iter().map(|&d| wh(d).abs()).fold(0.0, f64::max)
}

fn line(label: &str, rule: Rule, m: &Month) {
    let n = m.deviation.len() as f64;
    let mean_abs = m.deviation.iter().map(|&d| wh(d).abs()).sum::<f64>() / n;
    let sum = wh(m.deviation.iter().sum());
    let sigma = m.variance.iter().map(|v| v.sqrt()).fold(0.0, f64::max);
    let (lowest, highest) = (
        m.deviation.iter().map(|&d| wh(d)).fold(f64::MAX, f64::min),
        m.deviation.iter().map(|&d| wh(d)).fold(f64::MIN, f64::max),
    );
    println!(
        "{label:<44} {:<4} worst {:7.1}  mean |dev| {:6.2}  lowest {:8.1}  highest {:7.1}  sum {:5.2}  max σ {:5.1}",
        if rule == Rule::Old { "old" } else { "new" },
        worst(m),
        mean_abs,
        lowest,
        highest,
        sum,
        sigma
    );
}

fn rows_of(m: &ReadingMatrix) -> impl Fn(usize) -> (Vec<Wh>, Vec<Wh>) + '_ {
    move |t| {
        let (p, c) = m.row(t);
        (p.to_vec(), c.to_vec())
    }
}

/// The timeframe of the first day in which the most members have a share
/// that is not a whole Wh: the steady profile to repeat.
fn busiest_row(matrix: &ReadingMatrix, per_day: usize) -> usize {
    let fractional = |t: usize| {
        let (produced, consumed) = matrix.row(t);
        let net: Vec<i128> = produced
            .iter()
            .zip(consumed)
            .map(|(p, c)| i128::from(p.get() - c.get()))
            .collect();
        let supply: i128 = net.iter().map(|&x| x.max(0)).sum();
        let demand: i128 = net.iter().map(|&x| (-x).max(0)).sum();
        let shared = supply.min(demand);
        net.iter()
            .filter(|&&x| {
                let (w, total) = if x > 0 { (x, supply) } else { (-x, demand) };
                x != 0 && (w * shared) % total != 0
            })
            .count()
    };
    (0..per_day.min(matrix.range().len()))
        .max_by_key(|&t| (fractional(t), std::cmp::Reverse(t)))
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let june = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap_or_default();
    let days = 30;

    println!("30-day months from 2026-06-01, 15-minute timeframes (2,880); deviations in Wh");
    for (n, seed) in [(10usize, 1u64), (1_000, 1)] {
        let community = Community::new(n, june, days, seed);
        let matrix = community.matrix()?;
        let first = matrix.range().timeframes().next().expect("a month");
        let rows = matrix.range().len();
        for (label, pick) in [
            ("simulated", 0usize),
            ("first day repeated (daily profile)", 1),
            ("one timeframe repeated (steady)", 2),
        ] {
            let base = rows_of(&matrix);
            let steady = busiest_row(&matrix, 96);
            let row = |t: usize| match pick {
                0 => base(t),
                1 => base(t % 96),
                _ => base(steady),
            };
            for rule in [Rule::Old, Rule::New] {
                let m = month(rule, first, rows, n, row)?;
                line(&format!("{n} households, {label}"), rule, &m);
            }
        }
    }

    println!(
        "\nother timeframe lengths, 10 households, simulated and steady (one timeframe repeated)"
    );
    for minutes in [5u32, 60] {
        let length = TimeframeLength::new(minutes)?;
        let community = Community::new(10, june, days, 1).with_length(length);
        let matrix = community.matrix()?;
        let first = matrix.range().timeframes().next().expect("a month");
        let rows = matrix.range().len();
        let at_one = busiest_row(&matrix, length.per_day() as usize);
        for (label, steady) in [("simulated", false), ("steady", true)] {
            let base = rows_of(&matrix);
            let row = |t: usize| base(if steady { at_one } else { t });
            for rule in [Rule::Old, Rule::New] {
                let m = month(rule, first, rows, 10, row)?;
                line(&format!("{minutes}-minute, {label}"), rule, &m);
            }
        }
    }

    println!("\nmany simulated months (new rule; bound: 2 Wh a day = 60 Wh)");
    for (n, count) in [(10usize, seeds), (1_000, (seeds / 20).max(1))] {
        let (mut worst_all, mut over, mut members, mut z_max, mut sigma_max) =
            (0.0f64, 0usize, 0usize, 0.0f64, 0.0f64);
        let (mut old_worst, mut old_over) = (0.0f64, 0usize);
        // Members beyond 3, 3.5 and 4 standard deviations.
        let mut tails = [0usize; 3];
        for seed in 1_000..1_000 + count {
            let community = Community::new(n, june, days, seed);
            let matrix = community.matrix()?;
            let first = matrix.range().timeframes().next().expect("a month");
            let rows = matrix.range().len();
            let m = month(Rule::New, first, rows, n, rows_of(&matrix))?;
            let old = month(Rule::Old, first, rows, n, rows_of(&matrix))?;
            worst_all = worst_all.max(worst(&m));
            old_worst = old_worst.max(worst(&old));
            members += n;
            for (&d, &v) in m.deviation.iter().zip(&m.variance) {
                over += usize::from(wh(d).abs() > 2.0 * f64::from(days));
                sigma_max = sigma_max.max(v.sqrt());
                if v > 0.0 {
                    let z = wh(d).abs() / v.sqrt();
                    z_max = z_max.max(z);
                    for (tail, limit) in tails.iter_mut().zip([3.0, 3.5, 4.0]) {
                        *tail += usize::from(z > limit);
                    }
                }
            }
            old_over += old
                .deviation
                .iter()
                .filter(|&&d| wh(d).abs() > 2.0 * f64::from(days))
                .count();
        }
        println!(
            "{count} months of {n} households ({members} member-months): worst {worst_all:.1} Wh, \
             {over} members over 60 Wh, max σ {sigma_max:.1}, max |dev|/σ {z_max:.2} \
             (old rule: worst {old_worst:.1}, {old_over} over 60 Wh)"
        );
        // A normal distribution has 0.27 %, 0.047 % and 0.0063 % beyond.
        println!(
            "  members beyond 3σ: {} ({:.3} %), 3.5σ: {} ({:.4} %), 4σ: {} ({:.4} %)",
            tails[0],
            100.0 * tails[0] as f64 / members as f64,
            tails[1],
            100.0 * tails[1] as f64 / members as f64,
            tails[2],
            100.0 * tails[2] as f64 / members as f64
        );
    }
    Ok(())
}
